"""Two cluster runs alive at once with one config: each run's chain holds its own calls' records.

The workers pool sessions per run and config (review 14: a task of one run
must never run in an interpreter another run's task used), so two
:class:`SandboxedExecutor` runs on the same workers never share a session,
and a record sealed after its task returned, or left for the drain at
shutdown, reaches the chain of the run whose call produced it. Uses the
two-worker LocalCluster of ``test_distributed``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the 'distributed' extra (dask[distributed]) is not installed")

from glsandbox_kernel.audit import canonical_json  # noqa: E402
from glsandbox_kernel.cli import main as glsandbox_main  # noqa: E402
from glsandbox_kernel.distributed import SandboxedExecutor, carried_tasks  # noqa: E402
from glsandbox_kernel.pickling import call_message, call_provenance  # noqa: E402

from .test_distributed import STRICT, _reseal, _write, square  # noqa: E402
from .test_distributed import client as client  # noqa: E402 - the module's cluster fixture

pytestmark = pytest.mark.slow

EXECUTIONS = {"execution_success", "execution_error"}


def provenance(fn: Any, *args: Any) -> str:
    """The provenance hash the worker's session records for ``fn(*args)`` under STRICT (client side)."""
    _msg, fn_bytes, arg_bytes = call_message(fn, args, {})
    return call_provenance(fn_bytes, arg_bytes, canonical_json(STRICT.to_dict()))


def executions(path: Path) -> list[dict[str, Any]]:
    """The worker-side execution records a run chain file carries."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for t in carried_tasks(records) for r in t["records"] if r["event_type"] in EXECUTIONS]


def test_interleaved_runs_keep_their_own_records(client: Any, tmp_path: Path, capsys: Any) -> None:
    path_a, path_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    calls = 12
    args_a, args_b = list(range(calls)), list(range(1000, 1000 + calls))
    ex_a = SandboxedExecutor(client, STRICT, audit_path=str(path_a), label="a")
    ex_b = SandboxedExecutor(client, STRICT, audit_path=str(path_b), label="b")
    try:
        for x, y in zip(args_a, args_b, strict=True):  # alternate: both runs' calls on the same workers
            assert ex_a.submit(square, x).result() == x * x
            assert ex_b.submit(square, y).result() == y * y
        # Both in flight at once too, then one run ends while the other is alive.
        more_a = [ex_a.submit(square, x) for x in range(100, 104)]
        more_b = [ex_b.submit(square, y) for y in range(2000, 2004)]
        assert [f.result() for f in more_a + more_b] == [v * v for v in [*range(100, 104), *range(2000, 2004)]]
        args_a += list(range(100, 104))
        args_b += list(range(2000, 2004))
        ex_a.shutdown()
        assert ex_b.submit(square, 3000).result() == 9_000_000
        args_b.append(3000)
    finally:
        ex_a.shutdown()
        ex_b.shutdown()
    shared = 0
    sessions: list[set[str]] = []
    for path, args in ((path_a, args_a), (path_b, args_b)):
        assert glsandbox_main(["audit", "verify", str(path)]) == 0, capsys.readouterr().out
        out = capsys.readouterr().out
        assert "chain intact" in out and "anchored in its manifest" in out
        shared += "another run's" in out  # a session served both runs: its chain split between the files
        sessions.append({r["session_id"] for r in executions(path)})
        got = sorted(r["provenance_hash"] for r in executions(path))
        # Exactly one record per call of this run, and none of the other run's.
        assert got == sorted(provenance(square, x) for x in args), f"{path.name}: {len(got)} of {len(args)}"
    assert shared == 0
    assert sessions[0] and sessions[1] and not sessions[0] & sessions[1]

    # The gaps are declared, not free: drop one carried record of run a (the outer chain re-sealed),
    # and the manifest's segments of that session no longer match what the file carries.
    records = [json.loads(line) for line in path_a.read_text().splitlines()]
    victim = next(
        i for i, r in enumerate(records) if len(r["extra"].get("cluster_tasks", [{}])[0].get("lines", [])) > 1
    )
    batch = [dict(t) for t in records[victim]["extra"]["cluster_tasks"]]
    batch[0]["lines"] = batch[0]["lines"][1:]
    records[victim]["extra"] = {**records[victim]["extra"], "cluster_tasks": batch}
    _reseal(records, victim)
    forged = tmp_path / "forged.jsonl"
    _write(forged, records)
    assert glsandbox_main(["audit", "verify", str(forged)]) == 1
    assert "manifest segments" in capsys.readouterr().out


def test_claimed_records_are_sealed_when_the_result_leaves_the_worker() -> None:
    """A checkin only claims its call's records; pickling the outcome (as Dask does) seals and carries them.

    The task's thread does not seal (the session's group commit or the result's
    pickling does): every record still leaves with exactly one task, sealed,
    in its session's chain order, and a result pickled twice carries the same lines.
    """
    import pickle

    from glsandbox_kernel import OSSandbox
    from glsandbox_kernel.audit import verify_records
    from glsandbox_kernel.distributed.plugin import TaskOutcome, _Slot

    carried: list[dict[str, Any]] = []
    with OSSandbox(STRICT) as box:
        slot = _Slot(box, "key")
        for n in range(3):
            assert box.execute(square, n) == n * n
            outcome = TaskOutcome(key=f"task-{n}", worker="w", pid=0, session_id=box.session_id)
            outcome.pending = slot.take()
            assert outcome.pending is not None
            first = pickle.loads(pickle.dumps(outcome))
            assert first.pending is None and pickle.loads(pickle.dumps(outcome)).lines == first.lines
            carried.extend(first.records)
        assert slot.take() is None  # nothing left unclaimed
        sealed = box.audit_records
    assert [r["record_hash"] for r in carried] == [r["record_hash"] for r in sealed[: len(carried)]]
    assert [r["seq"] for r in carried] == list(range(len(carried)))
    assert [r["event_type"] for r in carried].count("execution_success") == 3
    assert verify_records(carried).ok
