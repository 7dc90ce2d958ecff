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
- ``execution_error`` with ``extra.cluster_cancelled``: tasks of an interrupted
  run that never started (cancelled on the scheduler, or refused by the worker
  they reached): nothing ran, so they carry no records;
- ``worker_crashed`` with ``extra.cluster_task_lost``: a Dask worker died while
  running a task; whether Dask ``retried`` it elsewhere or it ``failed``;
- ``session_end`` with ``extra.cluster_manifest``: every session of the run
  (and ``cancelled``: the tasks of the cancellation records) with its worker, record count, first/last ``seq`` and ``record_hash``, and
  ``segments``: the ``[first, last]`` seq ranges this run carried (a session
  pooled on a worker also serves other runs with its config; their calls'
  records are in their own chains, the gaps between this run's segments).

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
from ..audit.cluster import CANCELLED_KEY, LOST_KEY, MANIFEST_KEY, RUN_KEY, TASKS_KEY, segments, widen
from ..audit.cluster import carried_tasks as carried_tasks
from ..audit.cluster import check_cluster_runs as check_cluster_runs
from ..audit.cluster import decode_lines as decode_lines
from ..audit.cluster import verify_cluster_file as verify_cluster_file
from ..audit.cluster import verify_cluster_records as verify_cluster_records
from ..audit.log import AuditLog
from ..audit.records import EventType
from ..audit.sinks import JsonlFileSink

_OK_EVENTS = frozenset({EventType.EXECUTION_SUCCESS.value, EventType.SESSION_START.value, EventType.SESSION_END.value})


def encode_records(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Sealed worker-side records as compact JSON lines, the form they travel and are carried in.

    Called on the Dask worker (host side) for each task's records; every value
    reads back the same (``json.loads``), so each record's hash re-checks.
    """
    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    return [dumps(record) for record in records]


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
        self._seqs: dict[str, list[int]] = {}  # per session, the seqs this run carried (its segments)
        self._tasks = {"ok": 0, "error": 0, "lost": 0, "cancelled": 0}
        self._lost: list[dict[str, Any]] = []
        self._cancelled: list[dict[str, Any]] = []
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

    def add_cancelled(self, tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """Tasks of an interrupted run that never started (the executor's :meth:`cancel_pending`): one record.

        Each: ``task`` (the Dask key), ``kind``, ``label`` (e.g. the notebook) and
        ``where`` (``scheduler``: cancelled there; or the worker that refused to start it).
        """
        entries = [
            {
                "task": str(t.get("task")),
                "kind": str(t.get("kind")),
                "label": None if t.get("label") is None else str(t.get("label")),
                "where": str(t.get("where")),
            }
            for t in tasks
        ]
        if not entries:
            return None
        with self._lock:
            self._cancelled.extend(entries)
            self._tasks["cancelled"] += len(entries)
        return self._emit(EventType.EXECUTION_ERROR, extra={CANCELLED_KEY: entries})

    @property
    def cancelled(self) -> list[dict[str, Any]]:
        """The tasks recorded as cancelled before they started (copies)."""
        with self._lock:
            return [dict(e) for e in self._cancelled]

    def _track(self, rec: Mapping[str, Any], worker: str) -> None:
        sid = str(rec.get("session_id"))
        entry = self._sessions.get(sid)
        if entry is None:
            entry = self._sessions[sid] = {"session_id": sid, "worker": worker, "count": 0}
        entry["count"] += 1
        widen(entry, rec)
        if isinstance(rec.get("seq"), int):
            self._seqs.setdefault(sid, []).append(rec["seq"])
        if rec.get("event_type") == EventType.SESSION_END.value:
            entry["ended"] = True

    def close(self, *, summary: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Seal the run manifest and close the file (idempotent); returns the manifest record."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            for sid, entry in self._sessions.items():
                entry["segments"] = segments(self._seqs.get(sid, ()))
            manifest = {
                "run_id": self.run_id,
                "finished": time.time(),
                "tasks": dict(self._tasks),
                "lost": list(self._lost),
                "cancelled": list(self._cancelled),
                "sessions": sorted(self._sessions.values(), key=lambda s: s["session_id"]),
                "summary": dict(summary or {}),
            }
        record = self._emit(EventType.SESSION_END, extra={MANIFEST_KEY: manifest})
        self._log.close()
        return record
