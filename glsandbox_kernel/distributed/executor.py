"""``SandboxedExecutor`` / ``sandboxed_submit``: sandboxed calls on a Dask cluster (client side, host).

The client submits :func:`~glsandbox_kernel.distributed.plugin.run_call`
tasks with ``client.map``; each runs the user's function in a session the
worker's :class:`~glsandbox_kernel.distributed.plugin.SandboxPlugin` keeps.
One collector thread (:mod:`.results`) receives the results (``distributed.as_completed``),
seals each task's audit records into the run chain, and resolves the
``concurrent.futures.Future`` the caller holds: the decoded value, or the
exception with its own type (builtins stay builtins, ours stay ours). A task
whose Dask worker died is retried by Dask on another worker (up to
``distributed.scheduler.allowed-failures`` times); the run chain records
each loss and whether the task was ``retried`` or ``failed``, and a failed
one raises :class:`~glsandbox_kernel.SandboxCrashedError`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import distributed

from ..audit import load_key
from ..config import OSSandboxConfig
from .audit import ClusterAudit
from .plugin import (
    CallSpec,
    SandboxPlugin,
    _call_packed,
    _Chunk,
    _Packed,
    _task_packed,
    run_on_worker_cancel,
    run_on_worker_drain,
    run_on_worker_health,
)
from .results import _Results, _settle


class SandboxedExecutor(_Results, cf.Executor):
    """A ``concurrent.futures.Executor`` whose every call runs in a glsandbox sandbox on the cluster.

    ``submit(fn, *args, **kwargs)`` / ``map(fn, *iterables)`` / ``shutdown()``,
    and a context manager. ``config`` is the sandbox configuration of every
    call (default: ``OSSandboxConfig()``). ``audit_path`` is the JSONL file
    of the run chain (in memory without it: :attr:`audit`); ``audit_key``
    signs it (default ``$GLSANDBOX_AUDIT_KEY``). The plugin is registered
    with ``max_sessions`` unless ``register_plugin=False`` (e.g. when the
    workers were started with it). The workers' sessions of this run are
    its own (no other run's task runs in them) and are closed at shutdown,
    so that their ``session_end`` records join the run chain. ``workers``
    restricts the calls to those Dask workers (addresses or names).
    """

    def __init__(
        self,
        client: distributed.Client,
        config: OSSandboxConfig | None = None,
        *,
        audit_path: str | None = None,
        audit_key: bytes | None = None,
        max_sessions: int = 4,
        register_plugin: bool = True,
        workers: list[str] | None = None,
        label: str | None = None,
    ) -> None:
        self.client = client
        self.config = config or OSSandboxConfig()
        # Dask placement: only these workers (e.g. the ones with gVisor), never others.
        self._placement: dict[str, Any] = {"workers": list(workers), "allow_other_workers": False} if workers else {}
        if register_plugin:
            client.register_plugin(SandboxPlugin(max_sessions=max_sessions))
        workers = list(client.scheduler_info().get("workers", {}))
        self.audit = ClusterAudit(
            audit_path,
            key=audit_key if audit_key is not None else load_key(),
            scheduler=str(getattr(client.scheduler, "address", "")),
            workers=workers,
            label=label,
        )
        self._started = time.time()
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[list[cf.Future[Any]], str]] = {}
        self._futures: dict[str, Any] = {}  # Dask future by key, until resolved (cancel_pending)
        self._labels: dict[str, str] = {}  # what a task is to the user (a notebook's path), for the run chain
        self._failed: dict[str, str] = {}
        self._killed: set[str] = set()
        self._lost_logged: set[str] = set()
        self._done_keys: set[str] = set()
        self._seen_losses: set[tuple[Any, ...]] = set()
        self._ac = distributed.as_completed()
        self._wakeup = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._batches = 0  # gather threads running
        self._lost_lock = threading.Lock()
        self._shutdown = False
        self._collector = threading.Thread(target=self._collect, name="glsandbox-collector", daemon=True)
        self._collector.start()
        self.summary: dict[str, Any] | None = None

    # -- submitting -----------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a sandbox on some worker; a ``concurrent.futures.Future``."""
        return self.submit_many(fn, [(args, kwargs)])[0]

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[Any]:
        """Like ``Executor.map``: all calls submitted at once (one ``client.map``), results in order.

        ``chunksize`` > 1 sends that many calls per Dask task (run one after the
        other in one session, each with its own result, error and audit
        record), as ``ProcessPoolExecutor.map`` does: less Dask overhead per call.
        """
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [(args, {}) for args in zip(*iterables, strict=False)]
        futures = self.submit_many(fn, calls, chunksize=chunksize)
        end = None if timeout is None else time.monotonic() + timeout

        def results() -> Iterator[Any]:
            futures.reverse()  # every call is running (see _track): the rest run on, sealed into the run chain
            while futures:
                left = None if end is None else max(0.0, end - time.monotonic())
                yield futures.pop().result(left)

        return results()

    def submit_many(
        self,
        fn: Callable[..., Any],
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
        *,
        config: OSSandboxConfig | None = None,
        chunksize: int = 1,
    ) -> list[cf.Future[Any]]:
        """Submit ``fn(*args, **kwargs)`` for each ``(args, kwargs)`` with one ``client.map``."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new calls after shutdown")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if not calls:
            return []
        name = getattr(fn, "__name__", "call")
        groups = [calls[i : i + chunksize] for i in range(0, len(calls), chunksize)]
        keys = _keys(name, len(groups))
        packed: list[_Packed | _Chunk]
        if chunksize == 1:
            packed = [_Packed(tuple(args), dict(kwargs)) for ((args, kwargs),) in groups]
        else:
            packed = [_Chunk([(tuple(a), dict(k)) for a, k in group]) for group in groups]
        # Encoded once per map, decoded once per worker; pooled in this run's sessions only.
        spec = CallSpec(fn, config or self.config, run_id=self.audit.run_id)
        return self._track(
            keys,
            "call",
            [len(group) for group in groups],
            lambda: self.client.map(
                _call_packed,
                packed,
                key=keys,
                spec=spec,
                pure=False,
                retries=0,
                **self._placement,
            ),
        )

    def submit_tasks(
        self,
        task: Callable[..., Any],
        items: list[Any],
        kind: str,
        *,
        labels: list[str] | None = None,
        **kwargs: Any,
    ) -> list[cf.Future[Any]]:
        """Submit ``task(item, **kwargs)`` per item, each returning a :class:`TaskOutcome` (notebooks).

        ``labels`` name the items in the run chain when they are cancelled (:meth:`cancel_pending`)."""
        keys = _keys(kind, len(items))
        packed = [_Packed((item,), {}) for item in items]
        if labels is not None:
            with self._lock:
                self._labels.update(zip(keys, labels, strict=True))
        return self._track(
            keys,
            kind,
            [1] * len(keys),
            in_order=False,  # long tasks (notebooks): each result as it comes, for the progress bar
            submit=lambda: self.client.map(
                _task_packed,
                packed,
                key=keys,
                task=task,
                task_kwargs=kwargs,
                run_id=self.audit.run_id,
                pure=False,
                retries=0,
                **self._placement,
            ),
        )

    def _track(
        self,
        keys: list[str],
        kind: str,
        sizes: list[int],
        submit: Callable[[], list[Any]],
        *,
        in_order: bool = True,
    ) -> list[cf.Future[Any]]:
        """One ``concurrent.futures.Future`` per call; ``sizes[i]`` calls ride on Dask task ``keys[i]``.

        A single task (or any, without ``in_order``) goes to the collector
        thread (``as_completed``); a batch of tasks gets its own thread that
        gathers them in windows, in order: one ``gather`` per window instead of
        one per result.
        """
        groups: list[list[cf.Future[Any]]] = [[_running() for _ in range(size)] for size in sizes]
        with self._lock:
            for key, group in zip(keys, groups, strict=True):
                self._pending[key] = (group, kind)
            self._idle.clear()
        dask_futures = submit()
        with self._lock:
            for dask_future in dask_futures:
                self._futures[str(dask_future.key)] = dask_future
            batched = in_order and len(dask_futures) > 1
            if batched:
                self._batches += 1
            else:
                for dask_future in dask_futures:
                    self._ac.add(dask_future)
                self._wakeup.set()
        if batched:
            threading.Thread(
                target=self._gather_in_order, args=(dask_futures,), name="glsandbox-gather", daemon=True
            ).start()
        return [future for group in groups for future in group]

    # -- cancelling ------------------------------------------------------------------------------------
    def cancel_pending(self) -> list[dict[str, Any]]:
        """Cancel this run's tasks that have not started on a worker; the running ones run on (client side).

        Called by ``glsandbox run --cluster`` on Ctrl-C and by ``shutdown(cancel_futures=True)``.
        First every worker is told to start none of this run's tasks (``client.run``), then the
        tasks the scheduler has given to no worker are cancelled there. A task already running
        finishes and its records reach the run chain (cancelling it would drop them); one a
        worker holds but has not begun returns unrun (:class:`NotStarted`). Each cancelled
        task is recorded in the run chain and its future fails with ``CancelledError``.
        Returns the ones cancelled on the scheduler now (``task``, ``kind``, ``label``).
        """
        run_id = self.audit.run_id
        try:
            self.client.run(run_on_worker_cancel, run_id=run_id)  # before the scheduler is asked: no race
            with self._lock:
                keys = list(self._pending)
            waiting = set(self.client.run_on_scheduler(tasks_not_started, keys=keys)) if keys else set()
        except Exception:  # noqa: BLE001 - the cluster is gone: nothing can start any more, nothing to cancel
            return []
        cancelled: list[tuple[str, list[cf.Future[Any]], str, Any]] = []
        with self._lock:
            for key in keys:
                if key in waiting and key in self._pending:
                    group, kind = self._pending.pop(key)
                    cancelled.append((key, group, kind, self._futures.pop(key, None)))
            if not self._pending and not self._batches:
                self._idle.set()
        if not cancelled:
            return []
        with contextlib.suppress(Exception):  # not started either way: the workers refuse them
            self.client.cancel([f for *_rest, f in cancelled if f is not None])
        return self._cancelled([(key, group, kind) for key, group, kind, _f in cancelled], "scheduler")

    def _cancelled(self, tasks: list[tuple[str, list[cf.Future[Any]], str]], where: str) -> list[dict[str, Any]]:
        """Record tasks that never started (``where``: the scheduler, or the worker that refused them)."""
        with self._lock:
            entries = [
                {"task": key, "kind": kind, "label": self._labels.get(key), "where": where} for key, _g, kind in tasks
            ]
        self.audit.add_cancelled(entries)
        for (key, group, _kind), entry in zip(tasks, entries, strict=True):
            for future in group:
                _settle(future, cf.CancelledError(f"{entry['label'] or key}: cancelled before it started"))
        return entries

    # -- health and shutdown ------------------------------------------------------------------------
    def health(self, *, doctor: bool = True) -> dict[str, Any]:
        """Every worker's sandbox health (plugin sessions, ``glsandbox doctor``), by worker address."""
        reports: dict[str, Any] = self.client.run(run_on_worker_health, doctor=doctor)  # as cluster_doctor()
        return reports

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; with ``wait``, wait for the running ones and seal the run manifest.

        ``cancel_futures`` cancels the calls no worker has started (:meth:`cancel_pending`); the
        running ones run on (their futures' ``cancel()`` refuses: :func:`_running`)."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            self._wakeup.set()
        if cancel_futures:
            self.cancel_pending()
        if not wait:
            return
        self._idle.wait()
        self._collector.join()
        with contextlib.suppress(Exception):  # the scheduler is gone: the manifest is still sealed (review 22)
            self._check_lost()
        try:
            drained = self.client.run(run_on_worker_drain, run_id=self.audit.run_id)
        except Exception:  # noqa: BLE001 - workers gone: their last records are lost, the manifest says so
            drained = {}
        drains = [
            {
                "kind": "drain",
                "task": "drain",
                "worker": str(worker),
                "session_id": None,
                "status": "ok",
                "lines": lines,
            }
            for worker, lines in sorted(drained.items())
            if lines
        ]
        if drains:
            self.audit.add_tasks(drains)
        self.summary = {"tasks": self.audit.tasks, "failed": dict(self._failed)}
        self.audit.close(summary=self.summary)


def _keys(name: str, count: int) -> list[str]:
    """Unique Dask task keys for one submission: one random prefix, then the index (no urandom per task)."""
    prefix = f"glsandbox-{name}-{uuid.uuid4().hex}"
    return [f"{prefix}-{index}" for index in range(count)]


def tasks_not_started(dask_scheduler: Any, keys: list[str]) -> list[str]:
    """``client.run_on_scheduler`` callback: those of ``keys`` the scheduler has given to no worker yet."""
    out = []
    for key in keys:
        state = dask_scheduler.tasks.get(key)
        if state is None or state.state in {"released", "waiting", "no-worker", "queued"}:
            out.append(key)
    return out


def _running() -> cf.Future[Any]:
    """A call's future, running from its submission (client side): Dask may start a task at any moment
    and cannot take it back (its result and audit records would be dropped), so ``cancel()`` refuses."""
    future: cf.Future[Any] = cf.Future()
    future.set_running_or_notify_cancel()
    return future
