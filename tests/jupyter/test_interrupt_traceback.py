"""An interrupted cell's traceback ends in the user's own code, as stock ipykernel's does.

The worker raises the KeyboardInterrupt (and enforcing mode's SandboxStopped) from its own signal
handler, so its frames (``worker/loop.py``, ``_interrupt_handler``) were the last of the traceback
the analyst saw. The worker cuts them (``worker/common.user_traceback``): a real kernel over ZMQ,
interrupted through its kernel manager, and a sandboxed function interrupted through the library.
"""

from __future__ import annotations

import re
import sys
import threading
import time

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _need(name: str) -> None:
    ok, why = backends()[name].available()
    if not ok:
        pytest.skip(f"{name}: {why}")


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_interrupted_cell_traceback_ends_in_the_cell(glsandbox_kernelspec: str, backend: str) -> None:
    _need(backend)
    k = Kernel("glsandbox", extra_arguments=[f"--SandboxKernel.isolation={backend}"])
    try:
        msg_id = k.kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(30)")
        k.wait_for_stdout(msg_id, "sleeping")
        k.km.interrupt_kernel()
        outputs = k.collect(msg_id, timeout=120)
        reply = k.shell_reply(msg_id)["content"]
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        errors = [m["content"] for m in outputs if m["msg_type"] == "error"]
        assert [e["ename"] for e in errors] == ["KeyboardInterrupt"]
        text = _ANSI.sub("", "\n".join(errors[0]["traceback"]))
        assert "glsandbox_kernel" not in text and "_interrupt_handler" not in text, text
        # the last frame shown is the cell's line that was running
        frames = [line for line in text.splitlines() if line.startswith(("Cell In[", "File "))]
        assert frames and frames[-1].startswith("Cell In["), text
        assert "----> 3 time.sleep(30)" in text
        assert k.execute("print('still here')")[0]["status"] == "ok"
    finally:
        k.shutdown()


class _Watch:
    """A host ``sys.stdout`` that says when the sandboxed function printed ``text`` (it is running then)."""

    def __init__(self, text: str) -> None:
        self.text, self.seen, self.buf = text, threading.Event(), ""

    def write(self, data: str) -> int:
        self.buf += data
        if self.text in self.buf:
            self.seen.set()
        return len(data)

    def flush(self) -> None:
        pass


def nap() -> None:
    print("napping", flush=True)
    time.sleep(30)


def test_interrupted_function_traceback_has_no_worker_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    _need("basic")
    watch = _Watch("napping")
    monkeypatch.setattr(sys, "stdout", watch)
    with OSSandbox(create_config_by_level("moderate", isolation_type=IsolationType.BASIC)) as box:
        seen: list[BaseException] = []

        def run() -> None:
            try:
                box.execute(nap)
            except BaseException as exc:  # noqa: BLE001 - what the caller gets is the test's subject
                seen.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        assert watch.seen.wait(60), watch.buf
        assert box.interrupt()
        thread.join(60)
        assert seen and type(seen[0]).__name__ == "KeyboardInterrupt", seen
        text = "".join(getattr(seen[0], "sandbox_traceback", None) or [])
        frames = [line.strip() for line in text.splitlines() if line.strip().startswith("File ")]
        assert frames and frames[-1].endswith(", in nap"), text  # by value: no source line to show
        assert "glsandbox_kernel" not in text, text
