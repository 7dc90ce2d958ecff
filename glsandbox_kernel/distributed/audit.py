"""One audit chain per cluster run, and its verification (client side, host; no dask import).

The client's executor (or ``glsandbox run --cluster``) holds one
:class:`ClusterAudit` per run. Every task's audit records (sealed on the Dask
worker by its session, each session its own hash chain) arrive with the
task's result; the client seals them, unchanged, inside one record of the run
chain, so the run file is a single chain that ``glsandbox audit verify``
checks as is. The run's records:

- ``session_start`` with ``extra.cluster_run``: run id, scheduler, workers;
- one record per task with ``extra.cluster_task``: kind, task key, worker,
  session id, status and the worker-side ``records`` of that task (the
  record's event type, metrics and violations are those of the task's main
  record, so ``audit show`` reads naturally);
- ``worker_crashed`` with ``extra.cluster_task_lost``: a Dask worker died while
  running a task; whether Dask ``retried`` it elsewhere or it ``failed``;
- ``session_end`` with ``extra.cluster_manifest``: every session of the run
  with its worker, record count and first/last ``seq`` and ``record_hash``.

:func:`verify_cluster_records` re-checks what the outer chain cannot see: each
session's own chain across all the tasks that carried it, and each manifest
against the records it anchors.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..audit import AuditLog, EventType, JsonlFileSink, MemorySink, VerifyResult, verify_records
from ..audit.keys import Verifier

RUN_KEY = "cluster_run"
TASK_KEY = "cluster_task"
LOST_KEY = "cluster_task_lost"
MANIFEST_KEY = "cluster_manifest"


class ClusterAudit:
    """The run chain of one cluster run (client side, host; thread-safe).

    ``path``: the JSONL file (continued if it holds a chain already; fsync'd
    per record); without it the chain stays in memory (:attr:`records`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        key: bytes | None = None,
        run_id: str | None = None,
        scheduler: str | None = None,
        workers: Sequence[str] = (),
        label: str | None = None,
    ) -> None:
        self.run_id = run_id or uuid.uuid4().hex
        self.path = os.fspath(path) if path is not None else None
        self._memory = MemorySink()
        sinks: list[Any] = [JsonlFileSink(self.path)] if self.path else []
        sinks.append(self._memory)
        self._log = AuditLog(session_id=self.run_id, sinks=sinks, key=key)
        self._lock = threading.Lock()
        self._sessions: dict[str, dict[str, Any]] = {}
        self._tasks = {"ok": 0, "error": 0, "lost": 0}
        self._lost: list[dict[str, Any]] = []
        self._closed = False
        self._emit(
            EventType.SESSION_START,
            extra={
                RUN_KEY: {
                    "run_id": self.run_id,
                    "label": label,
                    "scheduler": scheduler,
                    "workers": sorted(workers),
                    "started": time.time(),
                }
            },
        )

    @property
    def records(self) -> list[dict[str, Any]]:
        """The run chain so far (copies)."""
        return list(self._memory.records)

    @property
    def tasks(self) -> dict[str, int]:
        """Tasks sealed so far: ``ok``, ``error`` (the call raised) and ``lost`` (worker died, Dask gave up)."""
        with self._lock:
            return dict(self._tasks)

    @property
    def head(self) -> str:
        return self._log.head

    def _emit(self, event: EventType | str, *, main: Mapping[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        main = main or {}
        return self._log.emit(
            event,
            isolation_type=str(main.get("isolation_type") or "cluster"),
            sandbox_mode=str(main.get("sandbox_mode") or "-"),
            security_level=str(main.get("security_level") or "-"),
            provenance_hash=main.get("provenance_hash"),
            execution_time=main.get("execution_time"),
            metrics=main.get("metrics") if isinstance(main.get("metrics"), Mapping) else None,
            violations=main.get("violations") if isinstance(main.get("violations"), list) else None,
            **kw,
        )

    def add_task(
        self,
        *,
        kind: str,
        task: str,
        worker: str,
        session_id: str | None,
        status: str,
        records: Sequence[Mapping[str, Any]],
        detail: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Seal one task's worker-side ``records`` into the run chain (called as each result arrives)."""
        inner = [dict(r) for r in records if isinstance(r, Mapping)]
        own = [r for r in inner if r.get("session_id") == session_id] or inner
        main = own[-1] if own else {}
        event = main.get("event_type") if main else None
        if event not in {e.value for e in EventType}:
            event = EventType.EXECUTION_SUCCESS if status == "ok" else EventType.EXECUTION_ERROR
        with self._lock:
            if kind != "drain":  # records drained from the workers at shutdown are no task
                self._tasks["ok" if status == "ok" else "error"] += 1
            for rec in inner:
                self._track(rec, worker)
        return self._emit(
            event,
            main=main,
            extra={
                TASK_KEY: {
                    "kind": kind,
                    "task": task,
                    "worker": worker,
                    "session_id": session_id,
                    "status": status,
                    "detail": dict(detail or {}),
                    "records": inner,
                }
            },
        )

    def add_lost(self, *, task: str, worker: str, outcome: str, detail: str = "") -> dict[str, Any]:
        """A Dask worker died while it ran ``task``; ``outcome`` is ``retried`` or ``failed``."""
        entry = {"task": task, "worker": worker, "outcome": outcome, "detail": detail[:2000]}
        with self._lock:
            self._lost.append(entry)
            if outcome == "failed":
                self._tasks["lost"] += 1
        return self._emit(EventType.WORKER_CRASHED, extra={LOST_KEY: entry})

    def _track(self, rec: Mapping[str, Any], worker: str) -> None:
        sid = str(rec.get("session_id"))
        entry = self._sessions.get(sid)
        if entry is None:
            entry = self._sessions[sid] = {"session_id": sid, "worker": worker, "count": 0}
        entry["count"] += 1
        _widen(entry, rec)
        if rec.get("event_type") == EventType.SESSION_END.value:
            entry["ended"] = True

    def close(self, *, summary: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Seal the run manifest and close the file (idempotent); returns the manifest record."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            manifest = {
                "run_id": self.run_id,
                "finished": time.time(),
                "tasks": dict(self._tasks),
                "lost": list(self._lost),
                "sessions": sorted(self._sessions.values(), key=lambda s: s["session_id"]),
                "summary": dict(summary or {}),
            }
        record = self._emit(EventType.SESSION_END, extra={MANIFEST_KEY: manifest})
        self._log.close()
        return record


def _widen(entry: dict[str, Any], rec: Mapping[str, Any]) -> None:
    """Keep the lowest and highest ``seq`` seen and their hashes (results arrive in any order)."""
    seq = rec.get("seq")
    if not isinstance(seq, int):
        return
    if "first_seq" not in entry or seq < entry["first_seq"]:
        entry["first_seq"], entry["first_hash"] = seq, rec.get("record_hash")
    if "last_seq" not in entry or seq > entry["last_seq"]:
        entry["last_seq"], entry["last_hash"] = seq, rec.get("record_hash")


# -- verification -------------------------------------------------------------------------------


def _extra(record: Any) -> Mapping[str, Any]:
    extra = record.get("extra") if isinstance(record, Mapping) else None
    return extra if isinstance(extra, Mapping) else {}


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
    runs: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for index, record in enumerate(records, start=1):
        extra = _extra(record)
        run_id = str(record.get("session_id")) if isinstance(record, Mapping) else ""
        if RUN_KEY in extra:
            runs[run_id] = {"sessions": {}, "manifest": None}
            order.append(run_id)
        elif TASK_KEY in extra or MANIFEST_KEY in extra:
            run = runs.get(run_id)
            if run is None:
                problems.append(f"cluster record of run {run_id[:8]} without its start (record {index})")
                continue
            task = extra.get(TASK_KEY)
            if isinstance(task, Mapping):
                inner = task.get("records")
                for rec in inner if isinstance(inner, list) else []:
                    if not isinstance(rec, dict):
                        problems.append(f"run {run_id[:8]}: a carried record is not an object")
                        continue
                    sid = str(rec.get("session_id"))
                    sessions.setdefault(sid, []).append(rec)
                    stats = run["sessions"].setdefault(sid, {"count": 0})
                    stats["count"] += 1
                    _widen(stats, rec)
            manifest = extra.get(MANIFEST_KEY)
            if isinstance(manifest, Mapping):
                run["manifest"] = manifest
    if not runs:
        return problems, notes
    for sid, chain in sessions.items():
        # Results arrive in completion order; a session's own order is its seq.
        if all(isinstance(r.get("seq"), int) for r in chain):
            chain.sort(key=lambda r: r["seq"])
        signed = any("signature" in r for r in chain)
        first_seq = chain[0].get("seq")
        result = verify_records(chain, key if signed else None, from_genesis=first_seq == 0)
        for problem in result.problems:
            problems.append(f"session {sid[:8]}: {problem}")
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
            for name in ("count", "first_seq", "first_hash", "last_seq", "last_hash"):
                if entry.get(name) != stats.get(name):
                    problems.append(
                        f"run {run_id[:8]}: session {sid[:8]}: manifest {name} {entry.get(name)!r} "
                        f"!= records {stats.get(name)!r}"
                    )
        for sid in listed:
            problems.append(f"run {run_id[:8]}: manifest lists session {sid[:8]} but no task carried its records")
        lost = [e for e in manifest.get("lost") or [] if isinstance(e, Mapping)]
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
        )
    return problems, notes


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
