"""What ``%%sandbox`` shows is what its audit record lists, through a real IPython shell.

``show_output`` skipped a display with empty data and an update without a display id but still
returned the frame to the output collector, so the record listed outputs that the frontend never
got. Now the magic shows what the kernel's relay shows (an empty display is published: the
frontend saves it; an update without an id is not) and records exactly that.
"""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from glsandbox_kernel.notebook.evidence import output_hashes

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, kernel_made
from .test_magic import ip, shell

__all__ = ["glsandbox_kernelspec", "ip", "shell"]  # the fixtures, imported for pytest

CELL = """\
%%sandbox --name shown
from IPython.display import publish_display_data
publish_display_data({})
publish_display_data({'text/plain': 'an update without a display id'}, update=True)
publish_display_data({'text/plain': 'after'})
"""


def test_record_lists_exactly_the_outputs_shown(ip: InteractiveShell) -> None:
    assert ip.run_cell("%%sandbox --name shown\n1", store_history=False).success  # start-up notices first
    with capture_output() as cap:
        result = ip.run_cell(CELL, store_history=False)
    assert result.success, result.error_in_exec
    shown: list[dict[str, Any]] = [
        {"output_type": "display_data", "data": o.data, "metadata": o.metadata} for o in cap.outputs
    ]
    assert [o["data"] for o in shown] == [{}, {"text/plain": "after"}]  # the empty one too, as the kernel does
    magics = ip.magics_manager.registry["SandboxMagics"]
    record = magics.registry.sessions["shown"].sandbox.audit_records[-1]
    recorded = record["extra"]["outputs"]
    assert [e["origin"] for e in recorded] == ["sandbox", "sandbox"]
    assert [e["hash"] for e in recorded] == output_hashes(shown)


def test_the_kernel_shows_the_same(glsandbox_kernelspec: str) -> None:
    """The glsandbox kernel's relay, which the magic now matches: the empty display shown, the update not."""
    k = Kernel("glsandbox")
    try:
        reply, outputs = k.execute(CELL.split("\n", 1)[1], timeout=60)
        assert reply["status"] == "ok", reply
        shown = [m for m in outputs if not kernel_made(m) and "data" in m["content"]]
        assert [(m["msg_type"], m["content"]["data"]) for m in shown] == [
            ("display_data", {}),
            ("display_data", {"text/plain": "after"}),
        ]
    finally:
        k.shutdown()
