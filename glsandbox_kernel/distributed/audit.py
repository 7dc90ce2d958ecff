"""One audit chain per cluster run, and its verification (client side, host; no dask import).

The client's executor (or ``glsandbox run --cluster``) holds one
:class:`ClusterAudit` per run. Every task's audit records (sealed on the Dask
worker by its session, each session its own hash chain) arrive with the
task's result; the client seals them, unchanged, inside one record of the run
chain, so the run file is a single chain that ``glsandbox audit verify``
checks as is. The run's records:

- ``session_start`` with ``extra.cluster_run``: run id, scheduler, workers;
- one record per batch of results with ``extra.cluster_tasks``: a list of
  tasks, each with its kind, task key, worker, session id, status and the
  worker-side records it carried as ``lines`` (each record's JSON text: the
  outer hash covers them as strings, which is cheap to seal; the verifier
  parses and re-checks them). The record's event type and violations are
  those of the tasks' main records (and, for a batch of one, its metrics), so
  ``audit show`` reads naturally. Older runs with one ``extra.cluster_task``
  (records as objects) per task still verify;
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

# The defining modules, not the audit package: its CLI (audit verify) imports this module.
from ..audit.keys import Verifier
from ..audit.log import AuditLog
from ..audit.records import EventType
from ..audit.sinks import JsonlFileSink
from ..audit.verify import VerifyResult, verify_records

RUN_KEY = "cluster_run"
TASK_KEY = "cluster_task"  # one task per record, records as objects (older runs; still verified)
TASKS_KEY = "cluster_tasks"
LOST_KEY = "cluster_task_lost"
MANIFEST_KEY = "cluster_manifest"

_OK_EVENTS = frozenset({EventType.EXECUTION_SUCCESS.value, EventType.SESSION_START.value, EventType.SESSION_END.value})


def encode_records(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Sealed worker-side records as compact JSON lines, the form they travel and are carried in.

    Called on the Dask worker (host side) for each task's records; every value
    reads back the same (``json.loads``), so each record's hash re-checks.
    """
    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    return [dumps(record) for record in records]


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
        # No memory sink: the log keeps every sealed line, :attr:`records` reads them back.
        sinks: list[Any] = [JsonlFileSink(self.path)] if self.path else []
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
        return self._log.records

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
        """Seal one task's worker-side ``records`` into the run chain (a batch of one)."""
        lines = encode_records(r for r in records if isinstance(r, Mapping))
        return self.add_tasks(
            [
                {
                    "kind": kind,
                    "task": task,
                    "worker": worker,
                    "session_id": session_id,
                    "status": status,
                    "lines": lines,
                    "detail": dict(detail or {}),
                }
            ]
        )

    def add_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Seal a batch of finished tasks into one record of the run chain (the executor, per batch of results).

        Each task: ``kind, task, worker, session_id, status`` (``ok``/``error``),
        ``lines`` (its worker-side records, :func:`encode_records`) and ``detail``.
        """
        entries: list[dict[str, Any]] = []
        mains: list[Mapping[str, Any]] = []
        with self._lock:
            for task in tasks:
                inner = decode_lines(task.get("lines") or [])
                sid = task.get("session_id")
                own = [r for r in inner if r.get("session_id") == sid] or inner
                if own:
                    mains.append(own[-1])
                if task.get("kind") != "drain":  # records drained from the workers at shutdown are no task
                    self._tasks["ok" if task.get("status") == "ok" else "error"] += 1
                for rec in inner:
                    self._track(rec, str(task.get("worker")))
                entry = {name: task.get(name) for name in ("kind", "task", "worker", "session_id", "status")}
                entry["detail"] = dict(task.get("detail") or {})
                entry["lines"] = list(task.get("lines") or [])
                entries.append(entry)
        statuses = {e["status"] for e in entries}
        event = next((m.get("event_type") for m in mains if m.get("event_type") not in _OK_EVENTS), None)
        if event not in {e.value for e in EventType}:
            event = EventType.EXECUTION_SUCCESS if statuses <= {"ok"} else EventType.EXECUTION_ERROR
        violations = [v for m in mains if isinstance(m.get("violations"), list) for v in m["violations"]]
        main: dict[str, Any] = dict(mains[-1]) if len(entries) == 1 and mains else {}
        if len(entries) != 1 and mains:  # a batch: what the tasks share, no one task's metrics
            main = {name: mains[0].get(name) for name in ("isolation_type", "sandbox_mode", "security_level")}
        main["violations"] = violations
        return self._emit(event, main=main, extra={TASKS_KEY: entries})

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
    runs: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for index, record in enumerate(records, start=1):
        extra = _extra(record)
        run_id = str(record.get("session_id")) if isinstance(record, Mapping) else ""
        if RUN_KEY in extra:
            runs[run_id] = {"sessions": {}, "manifest": None}
            order.append(run_id)
        elif TASKS_KEY in extra or TASK_KEY in extra or MANIFEST_KEY in extra:
            run = runs.get(run_id)
            if run is None:
                problems.append(f"cluster record of run {run_id[:8]} without its start (record {index})")
                continue
            for carried in _task_entries(extra):
                try:
                    inner = _entry_records(carried)
                except ValueError as exc:
                    problems.append(f"run {run_id[:8]}: record {index}: {exc}")
                    continue
                for rec in inner:
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
