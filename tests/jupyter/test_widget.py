"""The live metrics widget, the violation banner and ``usage_request``, over real kernels.

A ``jupyter_client`` frontend announces itself as a widget frontend the way
JupyterLab's widget manager does (it opens the ``jupyter.widget.control``
comm), runs a cell that allocates memory step by step for about 3 s, and
reads the comm messages of the kernel-side widget: the memory figure must
rise while the cell runs. A cell that calls ``ptrace`` through ctypes is
denied by the seccomp supervisor and must raise the red banner.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from glsandbox_kernel import OSSandbox, SandboxMode, create_config_by_level
from glsandbox_kernel.notebook.evidence import AUDIT_MIME, WIDGET_MIME, output_role
from glsandbox_kernel.widgets.monitor import CellMonitor

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec

__all__ = ["glsandbox_kernelspec"]

# 12 s: the monitor samples at 4 Hz, but a loaded CI host thins its updates out; the cell gives it time
ALLOCATE = """\
import time
blocks = []
for i in range(12):
    blocks.append(bytearray(16 * 2**20))
    time.sleep(1.0)
print(len(blocks), "blocks")
"""

PTRACE = """\
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.ptrace(16, 1, 0, 0)  # PTRACE_ATTACH to pid 1
print("ptrace returned", rc, ctypes.get_errno())
"""

_MEM = re.compile(r'class="glsandbox-mem" data-bytes="(\d+)"')


def announce_widget_frontend(kernel: Kernel) -> None:
    """What JupyterLab's widget manager does on connect: open the control comm."""
    msg = kernel.kc.session.msg(
        "comm_open", {"comm_id": uuid.uuid4().hex, "target_name": "jupyter.widget.control", "data": {}}
    )
    kernel.kc.shell_channel.send(msg)
    kernel.shell_reply(kernel.kc.kernel_info())  # shell requests are handled in order: the comm is open
    kernel.flush_iopub()


def _role(msg: dict[str, Any]) -> str | None:
    return output_role(msg["content"]) if msg["msg_type"] in ("display_data", "update_display_data") else None


@pytest.fixture(scope="module")
def widget_kernel(glsandbox_kernelspec: str) -> Iterator[Kernel]:
    k = Kernel("glsandbox")
    try:
        announce_widget_frontend(k)
        yield k
    finally:
        k.shutdown()


def test_live_widget_memory_rises_while_the_cell_runs(widget_kernel: Kernel) -> None:
    t0 = time.monotonic()
    reply, msgs = widget_kernel.execute(ALLOCATE, timeout=60)
    assert reply["status"] == "ok"
    kinds = [m["msg_type"] for m in msgs]
    # the widget: models opened, then shown as a monitor output
    live = [m for m in msgs if m["msg_type"] == "display_data" and WIDGET_MIME in m["content"]["data"]]
    assert len(live) == 1 and _role(live[0]) == "monitor"
    display_id = live[0]["content"]["transient"]["display_id"]
    assert kinds.index("comm_open") < kinds.index("display_data")
    # labels updated as the memory grows (values from the monitor outside the sandbox)
    updates = [m for m in msgs if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"]
    values = [int(v) for m in updates for v in _MEM.findall(str(m["content"]["data"]["state"].get("value", "")))]
    assert len(values) >= 4, values
    assert values[-1] > values[0] + 64 * 2**20, values
    assert sum(b > a for a, b in itertools.pairwise(values)) >= 3, values
    # ... while it ran: the updates are spread over seconds, before the cell's output
    stamps = [m["header"]["date"].timestamp() for m in updates if _MEM.search(str(m["content"]["data"]["state"]))]
    assert stamps[-1] - stamps[0] > 1.0
    stdout = next(i for i, m in enumerate(msgs) if m["msg_type"] == "stream" and "12 blocks" in m["content"]["text"])
    assert any(msgs.index(m) < stdout for m in updates)
    # the chart image is sent as a binary buffer
    assert any(m["buffers"] for m in msgs if m["msg_type"] == "comm_msg")
    # frozen into the summary, in place, comms closed, audit output last
    frozen = [
        m
        for m in msgs
        if m["msg_type"] == "update_display_data" and m["content"]["transient"].get("display_id") == display_id
    ]
    assert frozen and "peak memory" in frozen[-1]["content"]["data"]["text/plain"]
    assert "data:image/png;base64" in frozen[-1]["content"]["data"]["text/html"]
    assert "comm_close" in kinds
    assert msgs[-1]["msg_type"] == "display_data" and AUDIT_MIME in msgs[-1]["content"]["data"]
    assert time.monotonic() - t0 < 30


def test_quick_cell_shows_only_its_summary_line(widget_kernel: Kernel) -> None:
    reply, msgs = widget_kernel.execute("1 + 1")
    assert reply["status"] == "ok"
    kinds = [m["msg_type"] for m in msgs]
    assert "comm_open" not in kinds
    assert not [m for m in msgs if _role(m) == "monitor"]
    audit = msgs[-1]["content"]["data"]
    assert AUDIT_MIME in audit and audit["text/plain"].startswith("glsandbox audit: cell")


def test_violation_banner_and_stopped_status(widget_kernel: Kernel) -> None:
    reply, msgs = widget_kernel.execute(PTRACE, timeout=60)
    # Enforcing: the cell was stopped at once, so the line after the ptrace never ran.
    assert "ptrace returned" not in "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
    banners = [
        m for m in msgs if _role(m) == "monitor" and "glsandbox-violations" in m["content"]["data"].get("text/html", "")
    ]
    assert banners, [m["msg_type"] for m in msgs]
    first = banners[0]["content"]
    assert banners[0]["msg_type"] == "display_data"
    assert "ptrace" in first["data"]["text/plain"] and "trusted" in first["data"]["text/plain"]
    assert "denied" in first["data"]["text/plain"]
    final = banners[-1]["content"]["data"]["text/plain"]
    assert "stopped (enforcing mode)" in final
    assert reply["status"] == "error" and reply["ename"] == "SandboxEscapeError"
    record = msgs[-1]["content"]["data"][AUDIT_MIME]["record"]
    assert record["event_type"] == "escape_attempt" and record["violations"][0]["syscall"] == "ptrace"


def test_usage_request_reports_the_sandbox(widget_kernel: Kernel) -> None:
    kc = widget_kernel.kc
    kernel_pid = widget_kernel.pid
    msg = kc.session.msg("usage_request", {})
    kc.control_channel.send(msg)
    reply = kc.control_channel.get_msg(timeout=30)
    content = reply["content"]
    assert reply["msg_type"] == "usage_reply"
    assert content["pid"] != kernel_pid  # the worker, not the broker
    assert content["kernel_memory"] > 64 * 2**20  # the cell above kept ~190 MiB alive in the worker
    assert "kernel_cpu" in content and content["glsandbox"]["worker_pids"]
    assert kernel_pid not in content["glsandbox"]["worker_pids"]


def test_without_a_widget_frontend_a_static_chart_is_emitted(glsandbox_kernelspec: str) -> None:
    k = Kernel("glsandbox")
    try:
        reply, msgs = k.execute("import time\nx = bytearray(50 * 2**20)\ntime.sleep(1.2)\nprint('ok')", timeout=60)
    finally:
        k.shutdown()
    assert reply["status"] == "ok"
    assert "comm_open" not in [m["msg_type"] for m in msgs]
    static = [m for m in msgs if _role(m) == "monitor"]
    assert len(static) == 1 and static[0]["msg_type"] == "display_data"
    data = static[0]["content"]["data"]
    assert "glsandbox monitor:" in data["text/plain"] and "data:image/png;base64" in data["text/html"]


# -- the monitor on its own (no kernel): permissive mode says the cell continued ---------------------------


def test_permissive_banner_says_continued() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    def send(msg_type: str, content: dict[str, Any], metadata: Any = None, buffers: Any = None) -> None:
        sent.append((msg_type, content))

    config = create_config_by_level("moderate", sandbox_mode=SandboxMode.PERMISSIVE)
    with OSSandbox(config) as box:
        mon = CellMonitor(send=send, sandbox=box, widgets=False)
        mon.start()
        result = box.run_cell(PTRACE)
        mon.finish(result)
    assert result.status == "ok"  # permissive: the cell went on (ptrace still denied)
    banners = [c for kind, c in sent if "glsandbox-violations" in c["data"].get("text/html", "")]
    assert banners, sent
    assert "continued (permissive mode" in banners[-1]["data"]["text/plain"]


# -- the %%sandbox magic in an ordinary ipykernel -----------------------------------------------------------


def test_magic_cell_shows_the_live_widget_banner_and_audit_output() -> None:
    """``%%sandbox`` in the stock python3 kernel: the same monitor, driven by that kernel's process."""
    import os

    k = Kernel("python3", env={**os.environ, "GLSANDBOX_MONITOR_WIDGETS": "always"})
    try:
        assert k.execute("%load_ext glsandbox_kernel")[0]["status"] == "ok"
        reply, msgs = k.execute("%%sandbox\n" + ALLOCATE, timeout=60)
        assert reply["status"] == "ok", reply
        live = [m for m in msgs if m["msg_type"] == "display_data" and WIDGET_MIME in m["content"]["data"]]
        assert len(live) == 1
        values = [
            int(v)
            for m in msgs
            if m["msg_type"] == "comm_msg"
            for v in _MEM.findall(str(m["content"]["data"].get("state", {}).get("value", "")))
        ]
        assert len(values) >= 3 and values[-1] > values[0], values
        frozen = [m for m in msgs if m["msg_type"] == "update_display_data" and _role(m) == "monitor"]
        assert frozen and "peak memory" in frozen[-1]["content"]["data"]["text/plain"]
        assert any(m["msg_type"] == "display_data" and AUDIT_MIME in m["content"]["data"] for m in msgs)

        reply, msgs = k.execute("%%sandbox\n" + PTRACE, timeout=60)
        assert reply["status"] == "error" and reply["ename"] == "SandboxEscapeError"
        banners = [m for m in msgs if "glsandbox-violations" in str(m["content"].get("data", {}).get("text/html"))]
        assert banners and "stopped (enforcing mode)" in banners[-1]["content"]["data"]["text/plain"]
    finally:
        k.shutdown()
