"""Sandbox display ids are scoped to the cell that showed them (kernel/displays.py), over a real kernel.

nbclient and JupyterLab apply an ``update_display_data`` to every output with its id; so a later
cell's update would rewrite an earlier cell's sealed output. Judged at the protocol level: a cell's
own updates name its display's id, a later cell's update arrives as a new ``display_data`` of that
cell under an id no earlier output has, and a widget callback (a comm request, no cell) updates the
latest cell's display of the id.
"""

from __future__ import annotations

import pytest

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, kernel_made
from .test_kernel import kernel

__all__ = ["glsandbox_kernelspec", "kernel"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.timeout(180)


def _displays(outputs: list[dict], kind: str) -> list[tuple[str, str]]:
    return [
        (m["content"]["transient"]["display_id"], m["content"]["data"].get("text/plain", ""))
        for m in outputs
        if m["msg_type"] == kind and not kernel_made(m) and m["content"].get("transient", {}).get("display_id")
    ]


def test_updates_reach_only_the_cell_that_showed_the_display(kernel: Kernel) -> None:
    reply, outputs = kernel.execute(
        "from IPython.display import display, update_display\n"
        "display('a1', display_id='acc')\nupdate_display('a2', display_id='acc')"
    )
    assert reply["status"] == "ok", reply
    [(first, _)] = _displays(outputs, "display_data")
    assert _displays(outputs, "update_display_data") == [(first, "'a2'")]

    reply, outputs = kernel.execute("update_display('b1', display_id='acc')\nupdate_display('b2', display_id='acc')")
    assert reply["status"] == "ok", reply
    [(second, text)] = _displays(outputs, "display_data")  # a new output of this cell
    assert text == "'b1'" and second != first
    assert _displays(outputs, "update_display_data") == [(second, "'b2'")]

    # a widget callback (no cell of its own) updates the latest cell's display of the id
    reply, outputs = kernel.execute(
        "import ipywidgets as w\ns = w.IntSlider(value=1)\n"
        "s.observe(lambda c: update_display(f'v{c[\"new\"]}', display_id='acc'), names='value')\ns"
    )
    assert reply["status"] == "ok", reply
    view = next(m for m in outputs if m["msg_type"] == "execute_result")
    model_id = view["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    content = {"comm_id": model_id, "data": {"method": "update", "state": {"value": 7}, "buffer_paths": []}}
    msg = kernel.kc.session.msg("comm_msg", content)
    kernel.kc.shell_channel.send(msg)
    outputs = kernel.collect(str(msg["header"]["msg_id"]))
    assert _displays(outputs, "update_display_data") == [(second, "'v7'")], outputs
