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

:func:`verify_cluster_records` (the record format's checks live in
:mod:`glsandbox_kernel.audit.cluster`, so ``audit verify`` needs no
distributed import) re-checks what the outer chain cannot see: each
session's own chain across all the tasks that carried it, and each manifest
against the records it anchors.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..audit import AuditLog, EventType, JsonlFileSink, MemorySink
from ..audit.cluster import LOST_KEY, MANIFEST_KEY, RUN_KEY, TASK_KEY, widen
from ..audit.cluster import check_cluster_runs as check_cluster_runs
from ..audit.cluster import verify_cluster_file as verify_cluster_file
from ..audit.cluster import verify_cluster_records as verify_cluster_records


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
        widen(entry, rec)
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
