"""Harden: the VM backend took the guest's control-port violation lines without any host-side limit.

The guest agent's supervisor rate-limits its own records, but the guest is
untrusted: a guest kernel or agent taken over writes ``violation {...}`` lines
as fast as the control port carries them, and the host turned every one into
a record of the running call, an audit-log line and a banner. Measured from
the host (a real STRICT VM sandbox, permissive mode; the lines handed to the
host's control-line parser as its reader thread does, since the stock agent
cannot be made to misbehave): 5 000 lines gave 5 000 records in the call and
5 000 audit lines. The host's own supervisor and proxy cap the same floods.

Expected: the guest's lines go through the host's per-call rate limit (8 a
kind, then one a second; at most 64 kinds, the rest merged), every violation
still counted (``repeats``, summaries at the call's end).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from glsandbox_kernel import OSSandbox, SandboxMode
from glsandbox_kernel.backends.vm import VMBackend
from glsandbox_kernel.config import IsolationType, create_config_by_level

_OK, _WHY = VMBackend.available()
pytestmark = [pytest.mark.skipif(not _OK, reason=f"VM backend unavailable here: {_WHY}"), pytest.mark.timeout(300)]

N = 5000


def _line(i: int) -> bytes:
    """What a taken-over guest writes: half one kind (a flood), half a new kind each."""
    detail = f"ptrace(0x10, {i:#x})" if i % 2 else "ptrace(0x10, 0x1)"
    body = {"kind": "syscall", "syscall": "ptrace", "detail": detail, "escape": True, "pid": 7, "args": [16, i]}
    return b"violation " + json.dumps(body).encode()


def test_guest_violation_lines_are_rate_limited_on_the_host(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    cfg = create_config_by_level(
        "strict",
        isolation_type=IsolationType.VM,
        execution_timeout=120,
        sandbox_mode=SandboxMode.PERMISSIVE,
        audit_log_path=str(log),
    )
    with OSSandbox(cfg) as sb:
        assert sb.run_cell("1").status == "ok"
        worker = sb._session.worker
        assert worker is not None

        def flood() -> None:
            time.sleep(1.0)  # inside the call below
            for i in range(N):
                worker._ctl_line(_line(i))  # type: ignore[attr-defined]  # the reader thread's step

        feeder = threading.Thread(target=flood)
        feeder.start()
        result = sb.run_cell("import time\ntime.sleep(6)")
        feeder.join()
    assert result.status == "ok", result.error_value
    mine = [r for r in result.violations if r.get("source") == "guest" and r.get("syscall") == "ptrace"]
    with open(log, encoding="utf-8") as fh:
        lines = sum(1 for line in fh if "ptrace(0x10" in line)
    assert len(mine) < 300 and lines < 300, (
        f"{N} guest violation lines in one call: {len(mine)} records in the call, {lines} audit lines"
    )
    assert all(r["trusted"] is False for r in mine)
    assert sum((0 if r.get("summary") else 1) + r.get("repeats", 0) for r in mine) == N  # every one counted
