"""Outside review (22nd): sandboxed calls that ran on the cluster leave no trace in the run chain, and
``glsandbox audit verify`` passes it.

Judged from the host (a real 2-worker ``LocalCluster(processes=True)``, the plugin's sessions, the run
chain of a :class:`SandboxedExecutor`):

1. ``cancel()`` of a call that is already running returns True (``concurrent.futures`` says: "cannot
   be cancelled" once running, and returns False). The executor never marks its futures running, so
   every cancel succeeds; Dask cannot stop the task, which runs to its end in the sandbox; its result,
   and with it the call's audit records claimed at checkin (``_Slot.take``), is dropped. The session's
   next records reach the run chain after a gap, which the verifier calls "another run's" although a
   session serves only its own run (review 14). Measured: the cancelled call ran (the session counts
   it), no record of it is in the run chain, verify OK. The same happens, without anyone calling
   cancel, when ``list(ex.map(...))`` raises at an early item: ``map``'s ``finally`` cancels every later
   future, those that already ran (later windows: 64, 128, ... tasks) lose their records (measured: 72
   calls ran, 70 recorded, verify OK with "1 record(s) between this file's parts are another run's").
2. A Dask worker killed while it holds finished results that the in-order gather has not fetched yet
   (the first window waits for all its 64 tasks; later windows are up to 512): the scheduler recomputes
   them elsewhere, so each call runs twice, and the first run's records die with the worker. The
   ``remove-worker`` event lists them under ``lost-computed-tasks``, but ``_check_lost`` reads only
   ``processing-tasks``: no ``worker_crashed`` record, no ``cluster_task_lost`` entry. Measured: 63 calls
   ran on the killed worker, none of them appears in the run chain, verify OK.

Severity: medium (an audit trail that omits calls which ran, and a verify that accepts the gap; no
escape). Fix: mark a cf future running when its Dask task starts (or refuse ``cancel`` once
submitted: ``set_running_or_notify_cancel`` at submit) and, for a cancelled task that still finished,
gather its result anyway for the records (or release it only after ``run_on_worker_drain`` collected
them); in ``_check_lost`` also record ``lost-computed-tasks`` (outcome ``recomputed``); in the verifier
treat a seq gap in a session that only this run carried as a problem, not another run's records.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the 'distributed' extra (dask[distributed]) is not installed")

from glsandbox_kernel import create_config_by_level  # noqa: E402
from glsandbox_kernel.distributed import (  # noqa: E402
    SandboxedExecutor,
    carried_tasks,
    cluster_doctor,
    verify_cluster_records,
)

from ..backends.test_distributed import client as client  # noqa: E402 - its 2-worker cluster (processes)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

STRICT = create_config_by_level("strict")


def nap(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def _calls_ran(client: Any) -> int:
    """Calls the workers' sessions ran, by their own count (sessions still pooled)."""
    return sum(s["calls"] for report in cluster_doctor(client, doctor=False).values() for s in report["sessions"])


def _call_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for t in carried_tasks(records) for r in t["records"] if r.get("extra", {}).get("kind") == "call"]


def _scheduler_tasks(dask_scheduler: Any) -> dict[str, tuple[str, list[str], str | None]]:
    return {
        str(k): (
            ts.state,
            [w.address for w in ts.who_has or ()],
            ts.processing_on.address if ts.processing_on else None,
        )
        for k, ts in dask_scheduler.tasks.items()
    }


def test_a_cancelled_call_that_ran_is_in_the_run_chain(client: Any) -> None:
    ex = SandboxedExecutor(client, STRICT)
    try:
        future = ex.submit(nap, 3.0, 1)
        deadline = time.monotonic() + 60
        while not any(
            s["state"] == "busy" for r in cluster_doctor(client, doctor=False).values() for s in r["sessions"]
        ):
            assert time.monotonic() < deadline, "the call never started"
            time.sleep(0.05)
        cancelled = future.cancel()
        deadline = time.monotonic() + 60
        while _calls_ran(client) < 1:  # the sandbox runs it to its end
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ran = _calls_ran(client)
    finally:
        ex.shutdown()
    recorded = _call_records(ex.audit.records)
    assert verify_cluster_records(ex.audit.records).ok
    assert not cancelled or len(recorded) == ran, (
        f"cancel() returned True for a running call; the sandbox ran {ran} call(s), "
        f"the run chain records {len(recorded)} (verify OK)"
    )


def test_a_worker_lost_with_finished_results_is_recorded(client: Any) -> None:
    ex = SandboxedExecutor(client, STRICT)
    try:
        # Call 0 holds the first window open; the others finish and wait on the workers for the gather.
        futures = ex.submit_many(nap, [((5.0 if i == 0 else 0.0, i), {}) for i in range(64)])
        deadline = time.monotonic() + 120
        while True:
            tasks = client.run_on_scheduler(_scheduler_tasks)
            if sum(state == "memory" for state, _w, _p in tasks.values()) >= 63:
                break
            assert time.monotonic() < deadline, "the calls did not finish"
            time.sleep(0.1)
        busy = next(p for state, _w, p in tasks.values() if state == "processing")
        pids: dict[str, int] = client.run(os.getpid)
        victim = next(address for address in pids if address != busy)
        held = [k for k, (state, where, _p) in tasks.items() if state == "memory" and victim in where]
        assert held, "no finished result sits on the other worker"
        os.kill(pids[victim], signal.SIGKILL)
        assert [f.result(timeout=180) for f in futures] == list(range(64))
    finally:
        client.wait_for_workers(2, timeout=60)
        ex.shutdown()
    records = ex.audit.records
    assert verify_cluster_records(records).ok
    lost = {r["extra"]["cluster_task_lost"]["task"] for r in records if r["event_type"] == "worker_crashed"}
    from_victim = [t for t in carried_tasks(records) if t["worker"] == victim]
    missing = [k for k in held if k not in lost] if not from_victim else []
    assert not missing, (
        f"{len(held)} calls ran on the killed worker {victim} and were recomputed elsewhere; "
        f"the run chain has no trace of {len(missing)} of those first runs (no lost entry, no records; verify OK)"
    )
