"""Audit group commit: durable in time, nothing lost under kill -9 (issue 14).

With an audit file a call's record is sealed and written before the call
returns, and fsynced as a group: in the next call's overlap (while its
worker works) or by the shared host loop once the caller went idle, so the
next call does not return before it is durable, nor does close(). A real
host process killed with SIGKILL mid-run keeps the record of every call
that returned, and its chain verifies; so do several sessions of one
process appending to one file from several threads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig
from glsandbox_kernel.audit import verify_file

HOST = textwrap.dedent(
    """
    import sys, threading
    from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig

    def step(i):
        return i

    lock = threading.Lock()

    def run(t):
        box = OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC, audit_log_path=sys.argv[1]))
        i = 0
        while True:
            box.execute(step, i)
            with lock:  # after the call returned: this session's call i is done
                print(box.session_id, i, flush=True)
            i += 1

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(int(sys.argv[2]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    """
)


def _eventually(check: Callable[[], bool], within: float = 30.0) -> bool:
    """Poll ``check`` until it holds (no timing is asserted: ``within`` only bounds a hang)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _calls(path: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if (r.get("extra") or {}).get("kind") == "call"]


def test_records_are_durable_before_the_next_call_returns_and_at_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC, audit_log_path=str(path))) as box:
        log = box.audit_log
        assert log is not None
        for i in range(20):
            box.execute(abs, -i)
            # the call that just returned is in the file; only its fsync may still be pending
            assert len(_calls(path)) == i + 1
            assert log.pending <= 1
        # The caller went idle: the shared host loop makes the last record durable, no close needed.
        assert _eventually(lambda: log.pending == 0)
    assert log.pending == 0
    assert len(_calls(path)) == 20
    assert verify_file(path).ok


def test_without_a_file_records_are_sealed_in_order_off_the_callers_path() -> None:
    with OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC)) as box:
        log = box.audit_log
        assert log is not None
        for i in range(5):
            box.execute(abs, -i)  # queued unsealed: nothing durable to wait for, no sealing on this path
        assert _eventually(lambda: log.pending == 0)  # sealed by the host loop once the caller is idle
        records = box.audit_records  # reading them seals what is queued, in order
        assert log.pending == 0
    calls = [r for r in records if (r.get("extra") or {}).get("kind") == "call"]
    assert [r["extra"]["call_id"] for r in calls] == [1, 2, 3, 4, 5]
    assert [r["seq"] for r in records] == list(range(len(records)))


def _kill_after(path: Path, sessions: int, calls_each: int) -> dict[str, int]:
    """Run the HOST script with ``sessions`` threads; SIGKILL it mid-run once every session
    returned ``calls_each`` calls. Returns, per session, the last call it said had returned."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOST, str(path), str(sessions)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    returned: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        while len(returned) < sessions or min(returned.values()) < calls_each:
            line = proc.stdout.readline()
            assert line, "the host process ended early"
            session, i = line.split()
            returned[session] = int(i)
        os.killpg(proc.pid, signal.SIGKILL)  # while every session is in the middle of calls
        for line in proc.stdout:  # what was printed before the kill landed also returned
            session, i = line.split()
            returned[session] = int(i)
    finally:
        proc.kill()
        proc.wait()
    return returned


def test_nothing_is_lost_when_the_host_is_killed_with_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    returned = _kill_after(path, 1, 30)
    calls = _calls(path)
    ((session, last),) = returned.items()
    # Every call that returned (call_id is 1-based) has its record, in order.
    ids = [r["extra"]["call_id"] for r in calls if r["session_id"] == session]  # type: ignore[index]
    assert ids[: last + 1] == list(range(1, last + 2))
    result = verify_file(path)
    assert result.ok, result


def test_several_sessions_on_one_file_lose_nothing_under_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    returned = _kill_after(path, 4, 15)
    calls = _calls(path)
    for session, last in returned.items():
        ids = [r["extra"]["call_id"] for r in calls if r["session_id"] == session]  # type: ignore[index]
        assert ids[: last + 1] == list(range(1, last + 2)), session
    result = verify_file(path)  # one chain, not forked, though four sessions appended at once
    assert result.ok, result
