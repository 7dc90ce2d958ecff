"""The result side of :class:`~.executor.SandboxedExecutor` (client side, host): gather, seal, resolve.

A mixin of the executor: the collector thread (``distributed.as_completed``)
and the in-order gather threads receive the Dask results, seal each batch
into the run chain (:class:`~.audit.ClusterAudit`) and resolve the
``concurrent.futures.Future`` the caller holds; lost Dask workers are read
from the scheduler's events and recorded. Split from ``executor.py``, which
keeps submission, cancellation and shutdown.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from typing import Any

import distributed

from ..exceptions import SandboxCrashedError
from .audit import ClusterAudit
from .plugin import NotStarted, TaskOutcome

_WINDOW = 64  # tasks in a batch's first gather when it is resolved in order; each next gather takes twice as many
_MAX_WINDOW = 512


class _Results:
    """Receiving and sealing results; the state is :class:`~.executor.SandboxedExecutor`'s (its ``__init__``)."""

    client: distributed.Client
    audit: ClusterAudit
    _lock: threading.Lock
    _pending: dict[str, tuple[list[cf.Future[Any]], str]]
    _failed: dict[str, str]
    _killed: set[str]
    _lost_logged: set[str]
    _done_keys: set[str]
    _seen_losses: set[tuple[Any, ...]]
    _ac: Any
    _wakeup: threading.Event
    _idle: threading.Event
    _batches: int
    _lost_lock: threading.Lock
    _shutdown: bool
    _started: float
    _futures: dict[str, Any]
    #: the executor's: records tasks that never started
    _cancelled: Callable[[list[tuple[str, list[cf.Future[Any]], str]], str], list[dict[str, Any]]]

    def _gather_in_order(self, dask_futures: list[Any]) -> None:
        """Resolve a batch window by window (its own thread): early first results, few gathers (windows double)."""
        try:
            size = _WINDOW
            while dask_futures:
                # Off the list before gathering: a resolved window's results are released on the workers.
                window = dask_futures[:size]
                del dask_futures[:size]
                size = min(2 * size, _MAX_WINDOW)
                self._resolve_all(self._gather(window))
            try:
                self._check_lost()
            except Exception:  # noqa: BLE001 - the scheduler went away: nothing more to learn
                pass
        finally:
            with self._lock:
                self._batches -= 1
                if not self._pending and not self._batches:
                    self._idle.set()

    def _resolve_all(self, pairs: list[tuple[Any, Any]]) -> None:
        """Seal a batch of results into one run-chain record, then resolve their futures."""
        ready: list[tuple[cf.Future[Any], TaskOutcome, str, str]] = []
        for dask_future, result in pairs:
            try:
                ready.extend(self._resolve(dask_future, result))
            except Exception as exc:  # noqa: BLE001 - a bad result must not stop the others
                self._fail(str(dask_future.key), exc)
        if not ready:
            return
        try:
            self.audit.add_tasks([self._task_entry(outcome, kind, task) for _f, outcome, kind, task in ready])
        except Exception as exc:  # noqa: BLE001 - unsealed calls do not pass as done
            for future, _outcome, _kind, _task in ready:
                _settle(future, exc)
            return
        for future, outcome, _kind, _task in ready:
            if future.done():
                continue
            call_error = outcome.error
            if call_error is None:
                future.set_result(outcome.value)
            else:
                future.set_exception(call_error)

    def _fail(self, key: str, exc: BaseException) -> None:
        with self._lock:
            entry = self._pending.pop(key, None)
            self._futures.pop(key, None)
        for future in entry[0] if entry is not None else []:
            _settle(future, exc)

    # -- results (collector thread) ----------------------------------------------------------------
    def _collect(self) -> None:
        while True:
            self._wakeup.wait()
            for batch in self._ac.batches():
                self._resolve_all(self._results(batch))
            try:
                self._check_lost()
            except Exception:  # noqa: BLE001 - the scheduler went away: nothing more to learn
                pass
            with self._lock:
                if self._ac.is_empty():
                    self._wakeup.clear()
                    if not self._pending and not self._batches:
                        self._idle.set()
                    if self._shutdown:
                        return

    def _gather(self, window: list[Any]) -> list[tuple[Any, Any]]:
        """``(future, result or exception)`` for each of ``window``: one ``gather``, which also waits (no ``wait``
        first: the client's loop would track every future twice); ``errors="skip"`` leaves failed ones to
        :meth:`_results`."""
        try:
            got = self.client.gather({f.key: f for f in window}, errors="skip")
        except Exception:  # noqa: BLE001 - e.g. the scheduler went away: each future reports its own
            got = {}
        pairs: list[tuple[Any, Any]] = []
        rest: list[Any] = []
        for future in window:
            result = got.get(future.key)
            if result is None:
                rest.append(future)
            else:
                pairs.append((future, result))
        if rest:
            pairs.extend(self._results(rest))
        return pairs

    def _results(self, batch: list[Any]) -> list[tuple[Any, Any]]:
        """``(future, result or exception)`` for a batch of done futures: one gather for the finished ones."""
        finished = [f for f in batch if f.status == "finished"]
        pairs: list[tuple[Any, Any]] = []
        try:
            pairs.extend(zip(finished, self.client.gather(finished), strict=True))
        except Exception:  # noqa: BLE001 - one result could not be fetched: fetch them one by one
            for future in finished:
                try:
                    pairs.append((future, future.result()))
                except Exception as exc:  # noqa: BLE001 - reported as that call's error
                    pairs.append((future, exc))
        for future in batch:
            if future.status != "finished":
                try:
                    pairs.append((future, future.exception()))
                except BaseException as exc:  # noqa: BLE001 - CancelledError
                    pairs.append((future, exc))
        return pairs

    def _resolve(self, dask_future: Any, result: Any) -> list[tuple[cf.Future[Any], TaskOutcome, str, str]]:
        """The calls of one finished Dask task to seal and resolve; a lost or failed task fails its calls here."""
        key = str(dask_future.key)
        with self._lock:
            entry = self._pending.pop(key, None)
            self._futures.pop(key, None)
            self._done_keys.add(key)
        if entry is None:
            return []
        group, kind = entry
        if isinstance(result, NotStarted):  # its run was interrupted before the worker began it
            self._cancelled([(key, group, kind)], result.worker)
            return []
        outcomes = result if isinstance(result, list) else [result]
        if all(isinstance(o, TaskOutcome) for o in outcomes) and len(outcomes) == len(group):
            return [
                (future, outcome, kind, key if len(group) == 1 else f"{key}/{index}")
                for index, (future, outcome) in enumerate(zip(group, outcomes, strict=True))
            ]
        exc = _as_exception(result)
        text = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._failed[key] = text
        if isinstance(exc, distributed.scheduler.KilledWorker) or type(exc).__name__ == "KilledWorker":
            with self._lock:
                self._killed.add(key)
            error: BaseException = SandboxCrashedError(
                f"task {key}: the Dask worker running it died and Dask gave up ({text})", reason="dask_worker_lost"
            )
            error.__cause__ = exc
        else:
            error = exc
        for future in group:
            _settle(future, error)
        return []

    @staticmethod
    def _task_entry(outcome: TaskOutcome, kind: str, task: str) -> dict[str, Any]:
        """One call's entry in the run chain (:meth:`ClusterAudit.add_tasks`)."""
        return {
            "kind": kind,
            "task": task,
            "worker": outcome.worker,
            "session_id": outcome.session_id,
            "status": "ok" if outcome.error is None else "error",
            "lines": outcome.carried_lines(),  # worker threads in this process: the same object
            "detail": {**outcome.detail, "pid": outcome.pid, "started": outcome.started, "finished": outcome.finished},
        }

    def _check_lost(self) -> None:
        """Record every Dask worker loss that hit one of our tasks (scheduler's ``remove-worker`` events)."""
        with self._lost_lock:  # the collector and the gather threads all call this
            self._check_lost_locked()

    def _check_lost_locked(self) -> None:
        with self._lock:
            done = set(self._done_keys)
            failed = dict(self._failed)
        if not done:
            return
        events = self.client.get_events("all")
        recorded: set[str] = set()
        for stamp, msg in events:
            if stamp < self._started - 1 or not isinstance(msg, dict) or msg.get("action") != "remove-worker":
                continue
            if msg.get("expected"):
                continue
            # Running there (retried or failed), or finished there and not gathered yet: Dask recomputes
            # those elsewhere; the first run's records died with the worker, the run chain says so.
            running = {str(k) for k in msg.get("processing-tasks") or ()}
            computed = {str(k) for k in msg.get("lost-computed-tasks") or ()}
            for task in sorted(running | computed):
                if task not in done:
                    continue
                mark = (stamp, msg.get("worker"), task)
                if mark in self._seen_losses:
                    continue
                self._seen_losses.add(mark)
                outcome = "failed" if task in failed else "retried" if task in running else "recomputed"
                self.audit.add_lost(
                    task=task, worker=str(msg.get("worker")), outcome=outcome, detail=failed.get(task, "")
                )
                recorded.add(task)
        with self._lock:
            self._done_keys -= done  # keys resolved meanwhile wait for the next check
            unexplained = [task for task in self._killed if task not in recorded and task not in self._lost_logged]
            self._lost_logged.update(recorded)
            self._lost_logged.update(unexplained)
        for task in unexplained:  # Dask said KilledWorker but its event log no longer has the loss
            self.audit.add_lost(task=task, worker="unknown", outcome="failed", detail=failed.get(task, ""))


def _settle(future: cf.Future[Any], exc: BaseException) -> None:
    """Fail a call's future unless it is resolved already (collector or gather thread)."""
    if not future.done():
        future.set_exception(exc)


def _as_exception(result: Any) -> BaseException:
    if isinstance(result, BaseException):
        return result
    if isinstance(result, tuple) and len(result) == 3 and isinstance(result[1], BaseException):
        return result[1]
    if result is None:  # the Dask future ended with neither: its scheduler went away (review 22)
        return SandboxCrashedError("the Dask task ended without a result: lost scheduler", reason="dask_scheduler_lost")
    return RuntimeError(f"unexpected task result {type(result).__name__}")
