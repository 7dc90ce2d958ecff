"""Large cell output arrives complete, in order and coalesced (issue 14; real kernel, real worker).

The worker sends stream text in chunks; the library joins them once (no
copy per chunk) and the kernel coalesces them into few IOPub messages at a
bounded rate, as ipykernel's OutStream does. No timing is asserted: the
checks are completeness, order and the number of messages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, stderr_of, stdout_of

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest

LINES = 500_000
CELL = f"for i in range({LINES}):\n    print(i)\n"
EXPECTED = "".join(f"{i}\n" for i in range(LINES))
#: the worker's stream chunk (worker/streams.py StreamWriter): what a message per chunk would cost
CHUNK = 8192


@pytest.fixture(scope="module")
def kernel(glsandbox_kernelspec: str) -> Iterator[Kernel]:
    k = Kernel("glsandbox")
    try:
        yield k
    finally:
        k.shutdown()


def test_library_joins_500k_lines_complete_and_in_order() -> None:
    frames: list[dict[str, Any]] = []
    with OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC)) as box:
        result = box.run_cell(CELL, on_output=frames.append)
    assert result.status == "ok"
    streams = [o for o in result.outputs if o["output_type"] == "stream"]
    assert len(streams) == 1
    assert streams[0]["text"] == EXPECTED
    chunks = [f for f in frames if f.get("type") == "stream"]
    assert len(chunks) > 1  # it really came in pieces
    assert "".join(f["text"] for f in chunks) == EXPECTED


def test_kernel_500k_line_cell_arrives_complete_in_order_in_few_messages(kernel: Kernel) -> None:
    """Coalesced at a bounded rate: at most one message per FLUSH_INTERVAL of the cell's run (or
    per FLUSH_SIZE of text), however slow the machine, and far fewer than the worker's chunks."""
    from glsandbox_kernel.kernel.relay import FLUSH_INTERVAL, FLUSH_SIZE

    t0 = time.monotonic()
    reply, outputs = kernel.execute(CELL, timeout=300)
    took = time.monotonic() - t0
    assert reply["status"] == "ok"
    assert stdout_of(outputs) == EXPECTED
    messages = [m for m in outputs if m["msg_type"] == "stream"]
    chunks = len(EXPECTED) // CHUNK
    bound = took / FLUSH_INTERVAL + len(EXPECTED) / FLUSH_SIZE + 2
    assert len(messages) <= bound and len(messages) < chunks / 2, (len(messages), bound, chunks)


def test_kernel_keeps_stdout_stderr_order_while_coalescing(kernel: Kernel) -> None:
    code = "import sys\nfor i in range(300):\n    print('o', i)\n    print('e', i, file=sys.stderr)\n"
    reply, outputs = kernel.execute(code)
    assert reply["status"] == "ok"
    streams = [(m["content"]["name"], m["content"]["text"]) for m in outputs if m["msg_type"] == "stream"]
    text = "".join(t for _, t in streams)
    assert text == "".join(f"o {i}\ne {i}\n" for i in range(300))
    assert all(t.startswith("o " if name == "stdout" else "e ") for name, t in streams)
    assert stdout_of(outputs) == "".join(f"o {i}\n" for i in range(300))
    assert stderr_of(outputs) == "".join(f"e {i}\n" for i in range(300))


def test_kernel_publishes_a_quiet_stream_before_the_cell_ends(kernel: Kernel) -> None:
    """Text printed before the cell waits for input reaches the frontend while it waits (the timer flush)."""
    msg_id = kernel.kc.execute("print('early')\nx = input('go? ')\nprint('late', x)", allow_stdin=True)
    kernel.kc.get_stdin_msg(timeout=30)
    seen = ""
    while "early" not in seen:
        msg = kernel.kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen += msg["content"]["text"]
    assert seen == "early\n"  # nothing of after the input yet: the cell is still waiting
    kernel.kc.input("yes")
    outputs = kernel.collect(msg_id)
    assert kernel.shell_reply(msg_id)["content"]["status"] == "ok"
    assert stdout_of(outputs) == "late yes\n"
