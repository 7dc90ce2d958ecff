"""Outside review (22nd), what held: a SIGKILL of the host mid-run leaves a JSONL chain that verifies and
holds the record of every call that returned, in order, with failures, timeouts and a killed worker.

The warm-call change (``OSSandbox._call``'s overlap now ``AuditLog.commit()`` instead of ``sync()``)
seals the last call's queued record while the worker runs the next one. Judged from the host: a real
host process (namespace backend) runs calls that succeed, raise (a message with U+2028, NUL and a lone
surrogate), time out, and kill their own worker; it prints ``RET i`` after each call returned; this
test SIGKILLs it right after one such line (the next call in flight) or during a hanging call, then
runs ``glsandbox audit verify`` and reads the file. Measured: chain intact; one ``call`` record per
returned call, in call order, with the event type of its outcome; the lone surrogate's record written
scrubbed and marked ``audit_fallback``; the sandbox's processes gone with the host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from glsandbox_kernel.backends.registry import backends

from ..conftest import ROOT, glsandbox_cli, wait_gone

pytestmark = pytest.mark.timeout(400)

HOST = r"""
import sys
from glsandbox_kernel import OSSandbox, create_config_by_level, IsolationType

def ok(i):
    return i
def fail(i):
    raise ValueError(f"call {i} failed \u2028\x00\ud800")
def slow(i):
    import time
    time.sleep(60)
def die(i):
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)

KINDS = {"ok": ok, "fail": fail, "slow": slow, "die": die}
config = create_config_by_level(
    "moderate", isolation_type=IsolationType.NAMESPACE, audit_log_path=sys.argv[1], execution_timeout=2.0
)
sb = OSSandbox(config)
sb.start()
for i, kind in enumerate(sys.argv[2].split(",")):
    try:
        sb.execute(KINDS[kind], i)
        print("RET", i, kind, flush=True)
    except Exception:
        print("RET", i, kind, flush=True)
print("HANG", flush=True)
sb.execute(slow, -1)
"""

PLAN = ["ok", "fail", "ok", "slow", "ok", "die", "ok", "fail", "ok", "ok", "ok", "ok"]
EVENT = {"ok": "execution_success", "fail": "execution_error", "slow": "timeout", "die": "worker_crashed"}


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("kill_after", ["RET 7", "RET 9", "HANG"])
def test_every_returned_call_is_in_the_verified_chain_after_sigkill(tmp_path: Path, kill_after: str) -> None:
    ok, why = backends()["namespace"].available()
    if not ok:
        pytest.skip(f"namespace: {why}")
    path = tmp_path / "audit.jsonl"
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(path), ",".join(PLAN)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    returned: list[str] = []
    tree: list[int] = []
    try:
        assert host.stdout is not None
        for line in host.stdout:
            tree = sorted({*tree, *_descendants(host.pid)})
            if line.startswith("RET"):
                returned.append(line.split()[2])
            if line.strip().startswith(kill_after):
                break
        if kill_after == "HANG":
            wait_gone([host.pid], timeout=0.5)  # the hanging call runs
            tree = sorted({*tree, *_descendants(host.pid)})
        os.kill(host.pid, signal.SIGKILL)
    finally:
        host.kill()
        host.wait(timeout=30)
        if host.stdout is not None:
            host.stdout.close()
    assert not wait_gone(tree, timeout=10.0), "the sandbox outlived its SIGKILLed host"
    result = glsandbox_cli("audit", "verify", str(path), timeout=120)
    assert result.returncode == 0 and "chain intact" in result.stdout, result.stdout + result.stderr
    # bytes split on b"\n" only: str.splitlines() would also split at the raw U+2028 a record holds
    records = [json.loads(line) for line in path.read_bytes().split(b"\n") if line]
    calls = [r for r in records if r["extra"].get("kind") == "call"]
    assert len(calls) >= len(returned), f"{len(returned)} calls returned, {len(calls)} call records"
    assert [r["event_type"] for r in calls[: len(returned)]] == [EVENT[k] for k in returned]
    assert [r["seq"] for r in records] == list(range(len(records)))
    scrubbed = [r for r in calls if r["event_type"] == "execution_error"]
    assert scrubbed and all("audit_fallback" in r["extra"] for r in scrubbed)
