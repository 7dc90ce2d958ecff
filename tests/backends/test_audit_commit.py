"""Audit group commit off the caller's path: durable in time, nothing lost under kill -9 (issue 14).

A call's record is sealed and fsynced by the committer thread after the
call returns; the next call does not return before it is durable, nor
does close(). A real host process killed with SIGKILL mid-run keeps every
record of every call but (at most) the last one that returned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig
from glsandbox_kernel.audit import verify_file

HOST = textwrap.dedent(
    """
    import sys
    from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig

    def step(i):
        return i

    box = OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC, audit_log_path=sys.argv[1]))
    i = 0
    while True:
        box.execute(step, i)
        print(i, flush=True)
        i += 1
    """
)


def _calls(path: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if (r.get("extra") or {}).get("kind") == "call"]


def test_records_are_durable_before_the_next_call_returns_and_at_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC, audit_log_path=str(path))) as box:
        for i in range(20):
            box.execute(abs, -i)
            # every call before the one that just returned is on disk already
            assert len(_calls(path)) >= i
    assert len(_calls(path)) == 20
    assert verify_file(path).ok


def test_nothing_is_lost_when_the_host_is_killed_with_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOST, str(path)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        returned = -1
        while returned < 30:
            line = proc.stdout.readline()
            assert line, "the host process ended early"
            returned = int(line)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    calls = _calls(path)
    # Call 30 returned, so the record of call 29 (and of every call before) was durable by then.
    assert len(calls) >= 30
    result = verify_file(path)
    assert result.ok, result
