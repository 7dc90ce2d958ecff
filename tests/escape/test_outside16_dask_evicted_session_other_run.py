"""Outside review (17th): another run's checkin evicts a run's idle session and carries its records.

Severity: medium-high (integrity of audit evidence across runs of one cluster: a run's violation
leaves its own chain). Sessions are now pooled per run (``session_key = run_id/config_key``), but
the pool's bound ``max_sessions`` is still per Dask worker over all runs: ``SandboxPlugin.checkin``
evicts the least recently used idle sessions beyond it, whichever run they belong to, and ships
the closed session's lines (what it recorded after its last task, and its ``session_end``) with
the task of the run that happened to evict it. ``take_unsent(run_id)`` at the owner's shutdown
then finds nothing, and ``glsandbox audit verify`` passes both chains without a word.

Attack: run A's task (untrusted code) leaves a thread in its sandbox that calls ``execve`` a
second after the call returned (STRICT denies it; the supervisor records a violation into the
idle session's log at once). Run B (another executor, another client or user) calls on the same
worker with ``max_sessions=1``; its checkin evicts run A's session.

What the host saw: run A's chain holds ``session_start`` and ``execution_success`` only; the
violation and run A's ``session_end`` are in run B's chain (measured: B's carried records
``[B start, B success, A violation, A session_end, B session_end]``); A's manifest lists its
session as never ended. Both chains verify OK.

Expected: a session's records reach its own run's chain only (evict only sessions of the
checking-in run, or keep an evicted session's lines for its own run's next task or drain), so
that run A's chain carries its violation and each manifest lists exactly its sessions, ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the 'distributed' extra is not installed")

from glsandbox_kernel import create_config_by_level  # noqa: E402
from glsandbox_kernel.distributed import SandboxedExecutor, SandboxPlugin, carried_tasks  # noqa: E402
from glsandbox_kernel.distributed.client import local_cluster  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _square(x: int) -> int:
    return x * x


def _leave_exec_thread() -> str:
    """Run A's task: a thread that tries ``execve`` after the call has returned."""
    import os
    import threading
    import time

    def later() -> None:
        time.sleep(1.0)
        try:
            os.execv("/nonexistent-glsandbox-review17", ["x"])
        except OSError:
            pass

    threading.Thread(target=later, daemon=True).start()
    return "armed"


def _unshipped(dask_worker: Any) -> int:
    """Records the worker's idle sessions took after their last task (none claimed yet)."""
    plugin = dask_worker.plugins["glsandbox"]
    return sum(slot.box.audit_log.appended - slot.shipped for slot in list(plugin._idle.values()))


@pytest.fixture
def client() -> Iterator[Any]:
    from distributed import Client

    cluster = local_cluster(1)
    c = Client(cluster)
    c.register_plugin(SandboxPlugin(max_sessions=1))
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _chain(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The worker-side records a run chain carries, and its manifest."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    carried = [r for t in carried_tasks(records) for r in t["records"]]
    manifest = next(r["extra"]["cluster_manifest"] for r in reversed(records) if "cluster_manifest" in r["extra"])
    return carried, manifest


def test_an_evicted_sessions_records_stay_in_its_own_run(client: Any, tmp_path: Path) -> None:
    config = create_config_by_level("strict")
    path_a, path_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    ex_a = SandboxedExecutor(client, config, register_plugin=False, audit_path=str(path_a), label="a")
    ex_b = SandboxedExecutor(client, config, register_plugin=False, audit_path=str(path_b), label="b")
    try:
        assert ex_a.submit(_leave_exec_thread).result(timeout=240) == "armed"
        for _ in range(240):  # until the violation is in run A's idle session's log (no timing asserted)
            if sum(client.run(_unshipped).values()):
                break
            time.sleep(0.5)
        assert sum(client.run(_unshipped).values()), "the sandbox's execve after the call was never recorded"
        assert ex_b.submit(_square, 4).result(timeout=240) == 16  # its checkin evicts run A's idle session
    finally:
        ex_a.shutdown()
        ex_b.shutdown()
    carried_a, manifest_a = _chain(path_a)
    carried_b, _manifest_b = _chain(path_b)
    sessions_a = {r["session_id"] for r in carried_a}
    sessions_b = {r["session_id"] for r in carried_b}
    assert sessions_a and sessions_b
    events_a = [r["event_type"] for r in carried_a]
    assert "violation" in events_a, f"run A's violation is not in run A's chain (A carries {events_a})"
    stray = sessions_a & sessions_b
    assert not stray, f"run A's session {sorted(stray)} has records in run B's chain (carried by B's evicting task)"
    unended = [s["session_id"] for s in manifest_a["sessions"] if not s.get("ended")]
    assert not unended, f"run A's manifest lists sessions never ended in its chain: {unended}"
