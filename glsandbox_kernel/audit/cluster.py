"""Run chains that carry other chains: the record format of cluster runs and its checks (host side).

A cluster run (:class:`~glsandbox_kernel.distributed.audit.ClusterAudit`,
the writer) is one hash chain whose records carry the worker-side records of
each task, each session its own chain. The format's keys and the checks of
what the outer chain cannot see live here, in ``audit/``, so that
``glsandbox audit verify`` checks every such file without importing
:mod:`glsandbox_kernel.distributed` (the writer depends on the audit layer,
never the other way round). Called by :mod:`.cli` for every JSONL file and by
the distributed package, which re-exports :func:`verify_cluster_records` and
:func:`verify_cluster_file`.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .keys import Verifier
from .verify import VerifyResult, verify_records

RUN_KEY = "cluster_run"
TASK_KEY = "cluster_task"  # one task per record, records as objects (older runs; still verified)
TASKS_KEY = "cluster_tasks"
LOST_KEY = "cluster_task_lost"
MANIFEST_KEY = "cluster_manifest"
CANCELLED_KEY = "cluster_cancelled"  # tasks of an interrupted run that never started (no records)


def decode_lines(lines: Iterable[Any]) -> list[dict[str, Any]]:
    """The records of :func:`encode_records`' lines (``ValueError`` for a line that is no JSON object)."""
    out: list[dict[str, Any]] = []
    for line in lines:
        record = json.loads(line) if isinstance(line, str) else None
        if not isinstance(record, dict):
            raise ValueError("a carried record is not a JSON object")
        out.append(record)
    return out


def carried_tasks(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Every task a run chain carries, oldest first, with its worker-side ``records`` decoded.

    For readers of a run chain (tests, reports): one dict per task (kind,
    task, worker, session_id, status, detail, records) from either format.
    """
    out: list[dict[str, Any]] = []
    for record in records:
        for entry in _task_entries(_extra(record)):
            task = {k: v for k, v in entry.items() if k != "lines"}
            task["records"] = _entry_records(entry)
            out.append(task)
    return out


def widen(entry: dict[str, Any], rec: Mapping[str, Any]) -> None:
    """Keep the lowest and highest ``seq`` seen and their hashes (results arrive in any order)."""
    seq = rec.get("seq")
    if not isinstance(seq, int):
        return
    if "first_seq" not in entry or seq < entry["first_seq"]:
        entry["first_seq"], entry["first_hash"] = seq, rec.get("record_hash")
    if "last_seq" not in entry or seq > entry["last_seq"]:
        entry["last_seq"], entry["last_hash"] = seq, rec.get("record_hash")


def segments(seqs: Iterable[int]) -> list[list[int]]:
    """``[first, last]`` of each run of consecutive seqs (the parts of a session's chain one run carried)."""
    out: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def _pieces(chain: list[dict[str, Any]], split: bool) -> list[list[dict[str, Any]]]:
    """``chain`` (sorted by seq) cut where its seq jumps, when ``split``; else the whole chain."""
    pieces: list[list[dict[str, Any]]] = []
    for rec in chain:
        if pieces and (not split or rec.get("seq") == pieces[-1][-1].get("seq", 0) + 1):
            pieces[-1].append(rec)
        else:
            pieces.append([rec])
    return pieces


def _extra(record: Any) -> Mapping[str, Any]:
    extra = record.get("extra") if isinstance(record, Mapping) else None
    return extra if isinstance(extra, Mapping) else {}


def _task_entries(extra: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tasks one run-chain record carries: a batch (``cluster_tasks``) or one (``cluster_task``)."""
    batch = extra.get(TASKS_KEY)
    if isinstance(batch, list):
        return [e for e in batch if isinstance(e, Mapping)]
    single = extra.get(TASK_KEY)
    return [single] if isinstance(single, Mapping) else []


def _entry_records(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One task's worker-side records (``ValueError`` when one is no JSON object)."""
    if "lines" in entry:
        lines = entry["lines"]
        return decode_lines(lines if isinstance(lines, list) else [None])
    records = entry.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError("a carried record is not an object")
    return list(records)


def check_cluster_runs(records: Iterable[Any], key: bytes | Verifier | None = None) -> tuple[list[str], list[str]]:
    """``(problems, notes)`` for the cluster runs in a run chain (host side).

    Called by :func:`verify_cluster_records` and by ``glsandbox audit verify``
    on a file that holds cluster runs; ``([], [])`` when it holds none. Checks
    each session's own chain (every record carried by any task, in the order
    the client received them) and each run manifest against what it anchors.
    The outer chain itself is :func:`~glsandbox_kernel.audit.verify_records`' job.
    """
    problems: list[str] = []
    notes: list[str] = []
    sessions: dict[str, list[dict[str, Any]]] = {}
    carriers: dict[str, set[str]] = {}  # session -> the runs that carried its records
    workers: dict[str, set[str]] = {}  # session -> the Dask workers its records came from
    runs: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for index, record in enumerate(records, start=1):
        extra = _extra(record)
        run_id = str(record.get("session_id")) if isinstance(record, Mapping) else ""
        if RUN_KEY in extra:
            runs[run_id] = {"sessions": {}, "manifest": None, "ran": set(), "own": set(), "cancelled": []}
            order.append(run_id)
        elif TASKS_KEY in extra or TASK_KEY in extra or MANIFEST_KEY in extra or CANCELLED_KEY in extra:
            run = runs.get(run_id)
            if run is None:
                problems.append(f"cluster record of run {run_id[:8]} without its start (record {index})")
                continue
            cancelled = extra.get(CANCELLED_KEY)
            if isinstance(cancelled, list):
                run["cancelled"].extend(e for e in cancelled if isinstance(e, Mapping))
            for carried in _task_entries(extra):
                run["ran"].add(str(carried.get("task")))
                run["own"].add(str(carried.get("session_id")))  # the session the task itself ran in
                try:
                    inner = _entry_records(carried)
                except ValueError as exc:
                    problems.append(f"run {run_id[:8]}: record {index}: {exc}")
                    continue
                for rec in inner:
                    sid = str(rec.get("session_id"))
                    sessions.setdefault(sid, []).append(rec)
                    carriers.setdefault(sid, set()).add(run_id)
                    workers.setdefault(sid, set()).add(str(carried.get("worker")))
                    stats = run["sessions"].setdefault(sid, {"count": 0, "seqs": []})
                    stats["count"] += 1
                    stats["seqs"].append(rec.get("seq"))
                    widen(stats, rec)
            manifest = extra.get(MANIFEST_KEY)
            if isinstance(manifest, Mapping):
                run["manifest"] = manifest
    if not runs:
        return problems, notes
    for sid, chain in sessions.items():
        # Results arrive in completion order; a session's own order is its seq.
        ordered = all(isinstance(r.get("seq"), int) for r in chain)
        if ordered:
            chain.sort(key=lambda r: r["seq"])
        # A session pooled on a worker serves every run with its config: a run started on the same
        # cluster meanwhile carries the records of the calls it made there. Each part is checked as
        # a chain; the parts in between are another run's, which every carrier's manifest declares.
        split = ordered and all(_declares_segments(runs[run_id]["manifest"], sid) for run_id in carriers[sid])
        signed = any("signature" in r for r in chain)
        pieces = _pieces(chain, split)
        for piece in pieces:
            result = verify_records(piece, key if signed else None, from_genesis=piece[0].get("seq") == 0)
            for problem in result.problems:
                problems.append(f"session {sid[:8]}: {problem}")
        if len(pieces) > 1:
            away = sum(b[0]["seq"] - a[-1]["seq"] - 1 for a, b in itertools.pairwise(pieces))
            why = _gap_explained([runs[r] for r in sorted(carriers[sid])], sid, workers[sid])
            if why is None:
                problems.append(
                    f"session {sid[:8]}: {away} record(s) missing between the parts of its chain: only run "
                    f"{next(iter(carriers[sid]))[:8]} carried this session of its tasks and its manifest "
                    "explains no gap (no task lost with its worker): records that ran never reached the chain"
                )
            else:
                notes.append(f"session {sid[:8]}: {away} record(s) between this file's parts: {why}")
        if signed and key is None:
            notes.append(f"session {sid[:8]}: worker records are signed but no key was given")
    for run_id in order:
        run = runs[run_id]
        manifest = run["manifest"]
        if manifest is None:
            problems.append(f"run {run_id[:8]}: no run manifest (the run did not finish, or its end was cut off)")
            continue
        listed = {str(s.get("session_id")): s for s in manifest.get("sessions") or [] if isinstance(s, Mapping)}
        for sid, stats in run["sessions"].items():
            entry = listed.pop(sid, None)
            if entry is None:
                problems.append(f"run {run_id[:8]}: session {sid[:8]} carried records but is not in the manifest")
                continue
            stats["segments"] = segments(s for s in stats["seqs"] if isinstance(s, int))
            names = ["count", "first_seq", "first_hash", "last_seq", "last_hash"]
            for name in names + (["segments"] if "segments" in entry else []):
                if entry.get(name) != stats.get(name):
                    problems.append(
                        f"run {run_id[:8]}: session {sid[:8]}: manifest {name} {entry.get(name)!r} "
                        f"!= records {stats.get(name)!r}"
                    )
        for sid in listed:
            problems.append(f"run {run_id[:8]}: manifest lists session {sid[:8]} but no task carried its records")
        problems.extend(_check_cancelled(run_id, run, manifest))
        lost = [e for e in manifest.get("lost") or [] if isinstance(e, Mapping)]
        cancelled = run["cancelled"]
        notes.append(
            f"cluster run {run_id[:8]}: {len(run['sessions'])} session(s), "
            f"{sum(s['count'] for s in run['sessions'].values())} worker record(s) anchored in its manifest"
            + (
                f"; {len(lost)} task(s) hit by a lost worker ("
                + ", ".join(f"{e.get('task')}: {e.get('outcome')}" for e in lost[:5])
                + ")"
                if lost
                else ""
            )
            + (
                f"; {len(cancelled)} task(s) cancelled before they started ("
                + ", ".join(str(e.get("label") or e.get("task")) for e in cancelled[:10])
                + (", ..." if len(cancelled) > 10 else "")
                + ")"
                if cancelled
                else ""
            )
        )
    return problems, notes


def _check_cancelled(run_id: str, run: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[str]:
    """A run's cancellation records against its manifest: the same tasks, none of which also ran."""
    problems: list[str] = []
    recorded = sorted(str(e.get("task")) for e in run["cancelled"])
    if "cancelled" in manifest:
        listed = sorted(str(e.get("task")) for e in manifest.get("cancelled") or [] if isinstance(e, Mapping))
        if listed != recorded:
            problems.append(
                f"run {run_id[:8]}: manifest lists {len(listed)} cancelled task(s), records {len(recorded)}"
            )
    elif recorded:
        problems.append(f"run {run_id[:8]}: {len(recorded)} cancelled task(s) but the manifest lists none")
    for task in sorted(set(recorded) & run["ran"]):
        problems.append(f"run {run_id[:8]}: task {task} is recorded as cancelled before it started, and as run")
    return problems


def _gap_explained(carriers: list[Mapping[str, Any]], sid: str, workers: set[str]) -> str | None:
    """Why session ``sid``'s chain has gaps in this file, by its carriers' manifests; ``None``: unexplained.

    A session serves one run (review 14); the parts another run carried are that run's. One run
    alone: its manifest explains a gap by a task lost with the session's worker (its records died
    there), or the session is none of its tasks' own (lines carried for another run's session: a
    notebook's outputs from an earlier run, an evicted session's held lines).
    """
    if len(carriers) > 1:
        return "another run's"
    run = carriers[0]
    manifest = run["manifest"] if isinstance(run["manifest"], Mapping) else {}
    lost = {str(e.get("worker")) for e in manifest.get("lost") or [] if isinstance(e, Mapping)}
    if lost & workers:
        return f"tasks lost with worker {', '.join(sorted(lost & workers))} (the run manifest lists them)"
    if sid not in run["own"]:
        return "not a session of this run's tasks (lines it carried for another run's session)"
    return None


def _declares_segments(manifest: Any, sid: str) -> bool:
    """Whether a run manifest lists the parts (``segments``) of session ``sid`` its run carried."""
    listed = manifest.get("sessions") if isinstance(manifest, Mapping) else None
    return any(
        isinstance(s, Mapping) and str(s.get("session_id")) == sid and isinstance(s.get("segments"), list)
        for s in listed or []
    )


def verify_cluster_records(records: Sequence[Any], key: bytes | Verifier | None = None) -> VerifyResult:
    """The outer chain (:func:`verify_records`) plus :func:`check_cluster_runs` (host side)."""
    result = verify_records(records, key)
    problems, notes = check_cluster_runs(records, key)
    result.problems.extend(problems)
    result.notes.extend(notes)
    result.ok = not result.problems
    if problems and result.first_bad is None:
        result.first_bad = result.count + 1
    return result


def verify_cluster_file(
    path: str | os.PathLike[str], key: bytes | Verifier | None = None
) -> tuple[list[str], list[str]]:
    """:func:`check_cluster_runs` over a JSONL file (damaged lines are left to the chain verifier)."""
    records: list[Any] = []
    with open(path, "rb") as handle:
        for raw in handle:
            if b'"cluster_' not in raw:
                continue  # not a cluster record: the chain verifier's alone
            try:
                records.append(json.loads(raw))
            except ValueError:
                records.append(None)
    return check_cluster_runs(records, key)
