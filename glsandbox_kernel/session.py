"""The persistent sandboxed worker, host side: requests, limits, restarts.

:class:`Session` owns one worker at a time (started on first use through the
chosen backend), sends it requests and reads its frames. It enforces the
wall-clock timeout with its own clock, interrupts with SIGINT and kills after
a grace period, detects crashes, and turns everything into results or
:mod:`~glsandbox_kernel.exceptions`. After a kill the next request starts a
fresh worker and the caller is told that state was lost.

Everything read from the worker is hostile input: frames are size-capped and
decoded with the restricted codec under a budget (:mod:`glsandbox_kernel.protocol`).
Violations are attributed to the running call (or to the session alone)
and handed to ``violation_recorder`` as they arrive; in enforcing mode a
trusted one stops the running call at once (``STOP_SIGNAL``), and code that
does not stop is killed after the grace period.

The layers above ask the session, never its worker: :attr:`Session.alive`,
:attr:`Session.exit_status`, :meth:`Session.sample`, :meth:`Session.host_pids`, :meth:`Session.kill`.
Who calls: :class:`glsandbox_kernel.sandbox.OSSandbox`, the kernel and the
magic (through OSSandbox).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .backends.base import ResourceSample, SandboxBackend, WorkerProcess
from .backends.registry import default_backend, get_backend
from .call_refs import FunctionRefs
from .codec_fast import AVAILABLE as FAST_CODEC
from .config import IsolationType, OSSandboxConfig
from .disk_guard import disk_overrun
from .exceptions import (
    BackendUnavailableError,
    FrameTooLarge,
    SandboxCrashedError,
    SandboxError,
    SandboxSecurityError,
    SandboxTimeoutError,
)
from .metrics import Monitor, SandboxMetrics, fill_call_figures, tree_cpu
from .protocol import AnswerWriter, FrameChannel, WorkerGone, frame_cap
from .results import CallOutcome, _fmt_bytes, cpu_overrun, crash_error, memory_overrun
from .results import CellResult as CellResult  # re-exported: the public name lives here too
from .results import exception_from_reply as exception_from_reply
from .session_interrupts import USER_CODE, InterruptBinding, InterruptKilled, NotSent
from .session_violations import ViolationAttribution

log = logging.getLogger("glsandbox.session")

HELLO_TIMEOUT = 30.0

OutputCallback = Callable[[dict[str, Any]], None]
InputCallback = Callable[[str, bool], str]


class Session(InterruptBinding, ViolationAttribution):
    """One persistent worker behind a backend. Thread-safe for one request at a time.

    ``interrupt()`` may be called from another thread (see :mod:`.session_interrupts`).
    """

    def __init__(self, config: OSSandboxConfig, *, session_id: str | None = None) -> None:
        self.config = config
        self.session_id = session_id or uuid.uuid4().hex
        self.backend_cls, self.fallback_reason = self._choose_backend(config)
        self.backend: SandboxBackend = self.backend_cls(config)
        self.isolation_type: IsolationType = self.backend_cls.isolation_type
        self._isolation_label = self.isolation_type.value
        self.worker: WorkerProcess | None = None
        self.chan: FrameChannel | None = None
        self.worker_report: dict[str, Any] = {}
        self.monitor = Monitor.for_config(config)  # memory, the tree's CPU time, the disk quota: from outside
        profile = getattr(self.backend_cls, "profile", None)
        if profile is not None and not profile.namespaces and os.geteuid() == 0:
            # No namespace, no cgroup and uid 0, which RLIMIT_NPROC never limits: held from outside.
            self.monitor.task_limit = config.limits.max_processes
        lim = config.limits
        outside = (lim.cpu_time_limit_seconds, lim.memory_limit_bytes, lim.disk_quota_bytes)
        self._outside_limits = any(x is not None for x in outside)
        self.generation = 0
        self._lock = threading.RLock()
        self._req_id = 0
        self._init_interrupts()
        self._violations: list[dict[str, Any]] = []
        self._violations_lock = threading.Lock()
        #: called with each violation record as it arrives (supervisor/proxy thread); the
        #: kernel's live banner listens here. A failing listener is logged, never fatal.
        self.violation_listeners: list[Callable[[dict[str, Any]], None]] = []
        #: called first with each violation, as it arrives: OSSandbox writes it to the audit
        #: chain at once (whenever it happens, during a call or between calls).
        self.violation_recorder: Callable[[dict[str, Any]], None] | None = None
        self._running_call: int | None = None
        self._stop_at: float | None = None
        self._state_lost_pending = False
        self._last_sample: Any = None
        self.pending_controls: dict[str, Any] | None = None
        self._last_sample_gen = -1
        self._cap_sent = -1  # the generation whose worker was told the reply cap
        self._fn_refs = FunctionRefs()  # functions the worker holds: sent once, then by number
        self.closed = False

    # -- backend selection ---------------------------------------------------
    @staticmethod
    def _choose_backend(config: OSSandboxConfig) -> tuple[type[SandboxBackend], str | None]:
        """The backend for ``config``, honouring fallback_to_basic (recorded by the caller)."""
        if config.isolation_type is None:
            return default_backend(), None
        try:
            cls = get_backend(config.isolation_type)
            ok, reason = cls.available()
            hint = cls.unavailable_hint()
        except BackendUnavailableError as exc:
            ok, reason, hint = False, exc.reason, exc.hint
        if ok:
            return cls, None
        if config.fallback_to_basic:
            basic = get_backend(IsolationType.BASIC)
            return basic, f"{config.isolation_type.value} unavailable: {reason}; fell back to basic"
        raise BackendUnavailableError(config.isolation_type.value, reason, hint)

    # -- worker lifecycle ------------------------------------------------------
    def ensure_started(self) -> float | None:
        """Start the worker if none is running; returns the setup time when it started one."""
        with self._lock:
            if self.closed:
                raise SandboxError("this sandbox session is closed")
            if self.worker is not None and self.worker.poll() is None:
                return None
            if self.worker is not None:
                self._discard_worker()
            t0 = time.perf_counter()
            worker = self.backend.start(session_id=self.session_id)
            try:
                # A worker from a warm pool is connected already: then this only
                # routes the violations its supervisor recorded before the handover.
                cap = frame_cap(self.config.max_frame_bytes, self.config.limits.memory_limit_bytes)
                self.backend.connect(worker, max_frame=cap, timeout=HELLO_TIMEOUT)
                chan, hello = worker.chan, worker.hello
                if chan is None or hello is None:
                    raise SandboxCrashedError("the backend connected no worker channel")
                chan.max_frame = cap
                # Small requests as MessagePack, to a worker whose hello says it reads them (and replies so).
                codecs = hello.get("codecs")
                chan.fast_send = FAST_CODEC and type(codecs) is list and "msgpack" in codecs
                # A request the worker could not even hold is refused here, before it is sent.
                chan.max_send = self.config.limits.memory_limit_bytes
                self.backend.add_violation_listener(worker, self._on_violation)
            except BaseException as exc:
                worker.kill()
                worker.cleanup()
                if isinstance(exc, WorkerGone):
                    raise self._crash_error(worker, "while starting") from exc
                raise
            self.worker = worker
            self.chan = chan
            report = hello.get("report")
            self.worker_report = report if isinstance(report, dict) else {}
            self.generation += 1
            setup_time = time.perf_counter() - t0
            # Controls in force for this worker, as the host set them up (trusted),
            # recorded once in the next audit record.
            self.pending_controls = {
                "backend": self.backend_cls.name,
                "generation": self.generation,
                **worker.describe(),
            }
            return setup_time

    def _discard_worker(self) -> None:
        worker, chan, self.worker, self.chan = self.worker, self.chan, None, None
        if chan is not None:
            chan.discard_partial()  # a half-read frame's memory goes back now
        if worker is not None:
            if worker.poll() is None:
                worker.kill()
            self.monitor.keep_final(worker)  # a call's closing reading, before the cgroup goes
            worker.cleanup()

    # -- what the layers above ask (kernel, magic, widgets: never ``session.worker``) -----------
    @property
    def alive(self) -> bool:
        """True while a worker runs (False before the first start and after a kill or exit)."""
        return (worker := self.worker) is not None and worker.poll() is None

    @property
    def exit_status(self) -> int | None:
        """How the worker ended, not yet replaced (Popen's returncode: ``-N`` killed by signal N); else None."""
        return worker.poll() if (worker := self.worker) is not None else None

    def sample(self) -> ResourceSample | None:
        """A whole-tree resource reading of the running worker, measured outside; None without one."""
        worker = self.worker
        if worker is None or worker.poll() is not None:
            return None
        from .metrics import tree_sample

        try:
            return tree_sample(worker)
        except (OSError, ProcessLookupError):
            return None

    def host_pids(self) -> list[int]:
        """Host pids of the worker tree right now (empty when no worker runs)."""
        worker = self.worker
        if worker is None:
            return []
        try:
            return worker.host_pids()
        except OSError:
            return []

    def kill(self) -> None:
        """Kill the worker tree now, from any thread (a limit tripped outside); state is lost. A running
        request sees the worker gone and fails with the crash error; the next one starts a fresh worker."""
        worker = self.worker
        if worker is not None and worker.poll() is None:
            worker.kill()
        self._state_lost_pending = True

    def kill_worker(self, *, state_lost: bool = True) -> None:
        """Kill the worker tree now (timeout, interrupt grace, protocol violation)."""
        self._discard_worker()
        if state_lost:
            self._state_lost_pending = True

    def restart(self) -> None:
        """Replace the worker with a fresh one (state is gone, by request)."""
        with self._lock:
            self._discard_worker()
            self._state_lost_pending = False
            self.ensure_started()

    def close(self) -> None:
        """Ask the worker to exit, then make sure its whole tree is gone."""
        if self.closed:
            return
        with self._lock:
            self.closed = True
            worker, chan = self.worker, self.chan
            if worker is not None and chan is not None and worker.poll() is None:
                try:
                    chan.send({"type": "shutdown"})
                except OSError:
                    pass
                self.worker = self.chan = None
                worker.retire(0.5)  # the backend ends it (zygote backends: in the background)
            self._discard_worker()
            self.monitor.close()
            self.backend.close()

    # -- one request --------------------------------------------------------------
    def request(
        self,
        msg: dict[str, Any],
        *,
        timeout: float | None,
        on_message: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        reply_types: tuple[str, ...] = ("result",),
        monitor_context: dict[str, Any] | None = None,
        overlap: Callable[[], None] | None = None,
        abandon_late: bool = False,
    ) -> CallOutcome:
        """Send ``msg`` and read frames until a reply of ``reply_types``.

        Intermediate frames go to ``on_message``, which may return a frame to
        send back (input replies). ``overlap`` is the caller's bookkeeping,
        run after the request is sent, while the worker works. ``abandon_late``: past
        ``timeout`` the reply is abandoned (dropped when it comes) and the worker kept. Never raises
        for worker trouble: the outcome carries the error, so the caller can
        audit before raising.
        """
        user_code = msg.get("type") in USER_CODE  # an operation of its own, or part of the caller's
        with self.operation(new=user_code) as op:  # holds the session's lock
            state_lost = self._state_lost_pending
            setup_time = self.ensure_started()
            self._state_lost_pending = False
            worker, chan = self.worker, self.chan
            assert worker is not None and chan is not None
            self._req_id += 1
            msg["id"] = self._req_id
            # The worker refuses to send a reply over the host's cap itself (a clean MemoryError reply,
            # its state kept) instead of sending a frame the host must refuse; the host still enforces it.
            # Sent until a request of this worker carried it (the worker keeps it): fewer objects per frame.
            if self._cap_sent != self.generation:
                msg["max_reply"] = chan.max_frame
            if msg.get("type") == "call":
                msg = self._fn_refs.apply(msg, self.generation)
            self._interrupt_at = None
            self._stop_at = None
            enforced: str | None = None
            kept = False  # an error that left the worker and its state as they were
            # Limits the monitor enforces from outside (CPU time of the tree; resident memory without
            # a cgroup) are enforced with enable_metrics=False too; only the figures go unreported.
            measure = self.config.enable_metrics or self._outside_limits
            before = None
            if measure:
                # The previous call's closing reading is this call's opening one.
                fresh = self._last_sample_gen != self.generation
                before = None if fresh else self._last_sample
                if before is None:
                    before = worker.call_sample()
                if fresh:  # a new worker: its CPU time budget starts here, its disk count before it runs
                    self.monitor.fresh_worker(worker, tree_cpu(worker, before))
                worker.reset_peak()
            t0 = time.perf_counter()
            reply: dict[str, Any] | None = None
            error: BaseException | None = None
            call_id = self._req_id
            # Workers with a supervisor (ViolationRelay): its rate limit starts afresh for this call;
            # what it still held of the last one is written first, before this call is running.
            begin_call = getattr(worker, "begin_call", None)
            if begin_call is not None:
                begin_call()
            with self._violations_lock:
                self._violations = []
                self._running_call = call_id
            try:
                if user_code and self._cancelled_before_send(op):
                    raise NotSent
                chan.send(msg)
                if user_code:
                    self._sent(op)
                self._cap_sent = self.generation
                # From here until the reply the worker runs: do the bookkeeping now.
                if measure:
                    self.monitor.begin(worker, monitor_context)
                if overlap is not None:
                    overlap()
                try:
                    reply = self._read_until_reply(worker, chan, timeout, on_message, reply_types)
                except KeyboardInterrupt:
                    # Ctrl-C in the host: pass it on, and read on so the channel
                    # stays in step (killed after the grace period if need be).
                    self.interrupt()
                    reply = self._read_until_reply(worker, chan, timeout, on_message, reply_types)
                self._fn_refs.settle(msg, reply)
            except NotSent:
                error = KeyboardInterrupt("interrupted before it started: nothing ran, the state is kept")
            except _Timeout as exc:
                kept = abandon_late  # the worker still works on it, its state intact: the reply is dropped
                if not kept:
                    self.kill_worker()
                error = SandboxTimeoutError(
                    f"no reply within {exc.limit:g} s: abandoned, the worker and its state are kept"
                    if kept
                    else f"execution exceeded the {exc.limit:g} s timeout; the worker and every process it "
                    "started were killed and its state is lost (the next call starts a fresh worker)",
                    timeout=exc.limit,
                )
            except _StopKilled:
                self.kill_worker()
                enforced = "killed"
            except InterruptKilled:
                self.kill_worker()
                error = KeyboardInterrupt(
                    "interrupted: the code did not stop on SIGINT within "
                    f"{self.config.interrupt_grace_seconds:g} s, so the worker was killed; its state is lost"
                )
            except FrameTooLarge as exc:  # refused before sending, or the worker skipped it: all in step
                self._cap_sent = -1  # a skipped request told the worker nothing: tell it again
                self._fn_refs.forget()  # nor did it define a function reference
                error = exc
            except SandboxSecurityError as exc:
                error = self._refused_frame(exc)  # the worker killed; a forged frame: the call's violation
            except (WorkerGone, OSError) as exc:
                error = self._crash_error(worker, "during the call")
                self.kill_worker()
                error.__cause__ = exc
            finally:
                if user_code:
                    self._replied()
                end_call = getattr(worker, "end_call", None)
                if end_call is not None:
                    end_call()  # the rate limit's count of this call, while it is still the running one
                with self._violations_lock:
                    self._running_call = None
            if enforced is None and self._stop_at is not None:
                enforced = "stopped"
            self._stop_at = None
            elapsed = time.perf_counter() - t0
            metrics = SandboxMetrics(
                isolation_type=self._isolation_label,
                fallback=self.fallback_reason,
                setup_time=setup_time,
                state_lost=state_lost
                or (error is not None and not kept and not isinstance(error, FrameTooLarge))
                or enforced == "killed",
                execution_time=elapsed,
                calls=1,
            )
            if measure:
                self.monitor.end()
                after = self._fill_metrics(metrics, worker, before)
                if error is None:
                    error = self._memory_overrun(metrics, worker, after)
                if error is None:
                    error = self._cpu_overrun(metrics, after)
                if not self.config.enable_metrics:
                    metrics.forget_figures()
            violations = self._take_violations() if self._violations else []
            if violations:
                from .supervisor import violation_count

                metrics.violations_detected = sum(violation_count(v) for v in violations)
                metrics.escape_attempts = sum(violation_count(v) for v in violations if v.get("escape"))
            return CallOutcome(reply, error, metrics, violations, state_lost, call_id, enforced)

    def _read_until_reply(
        self,
        worker: WorkerProcess,
        chan: FrameChannel,
        timeout: float | None,
        on_message: Callable[[dict[str, Any]], dict[str, Any] | None] | None,
        reply_types: tuple[str, ...],
    ) -> dict[str, Any]:
        start, grace = time.monotonic(), self.config.interrupt_grace_seconds
        # Decoding a frame is part of the call: it must end within the call's timeout.
        chan.decode_deadline = None if timeout is None else start + timeout
        answers = AnswerWriter(chan)  # never blocks the loop: a worker may ask without reading
        while True:
            answers.flush()
            ends = [start + timeout] if timeout is not None else []
            ends += [t + grace for t in (self._interrupt_at, self._stop_at) if t is not None]
            # Wake at least every 0.2 s to notice interrupts set by other threads (and write answers).
            wait = min([0.2, *(max(0.0, e - time.monotonic()) for e in ends)])
            msg = chan.recv(timeout=wait)
            if msg is None:
                now = time.monotonic()
                if timeout is not None and now >= start + timeout:
                    raise _Timeout(timeout)
                if self._stop_at is not None and now >= self._stop_at + grace:
                    raise _StopKilled()
                if self._interrupt_at is not None and now >= self._interrupt_at + grace:
                    raise InterruptKilled()
                continue
            kind, rid = msg["type"], msg.get("id")
            if rid != self._req_id and (rid is not None or kind in reply_types):
                continue  # a stale reply to an earlier, abandoned request (only replies carry ids)
            if kind in reply_types:
                if answers.torn():  # it replied without reading our answer: the channel is out of step
                    self.kill_worker()
                return msg
            if kind == "request_failed":  # the worker could not hold the request (it said so, alive)
                raise FrameTooLarge(
                    f"the request does not fit in the sandbox's memory limit of "
                    f"{_fmt_bytes(self.config.limits.memory_limit_bytes)}; the worker and its state are kept",
                    limit=self.config.limits.memory_limit_bytes,
                )
            if on_message is not None and not (kind == "input_request" and answers.busy):
                answer = on_message(msg)
                if answer is not None:
                    answers.offer(answer)

    def _fill_metrics(self, metrics: SandboxMetrics, worker: WorkerProcess, before: Any) -> ResourceSample | None:
        """The call's figures: closing reading less opening one (which was the last call's closing)."""
        after = worker.call_sample() if self.worker is worker else self.monitor.killed_reading
        self._last_sample, self._last_sample_gen = after, self.generation
        fill_call_figures(metrics, before, after, self.monitor)
        return after

    def _memory_overrun(
        self, metrics: SandboxMetrics, worker: WorkerProcess, after: ResourceSample | None
    ) -> SandboxError | None:
        """A call whose peak, measured outside, passed the limit fails and the worker (which may still
        hold the memory) is replaced; see :func:`.results.memory_overrun`."""
        error = memory_overrun(metrics, worker, self.monitor, after)
        if error is not None:
            self.kill_worker()
            metrics.state_lost = True
        return error

    def _cpu_overrun(self, metrics: SandboxMetrics, after: ResourceSample | None) -> SandboxError | None:
        """A call past the CPU time limit or the disk quota at its end fails; the worker is replaced
        (:func:`.results.cpu_overrun`, :func:`.disk_guard.disk_overrun`)."""
        error = cpu_overrun(self.monitor, after) or disk_overrun(self.monitor)
        if error is not None:
            self.kill_worker()
            metrics.state_lost = True
        return error

    def _crash_error(self, worker: WorkerProcess, when: str) -> SandboxError:
        """How the worker ended, as the error the caller gets (see :func:`.results.crash_error`)."""
        return crash_error(worker, when, self.config, self.monitor)


class _Timeout(Exception):
    def __init__(self, limit: float) -> None:
        super().__init__(limit)
        self.limit = limit


class _StopKilled(Exception):
    """The code kept running past the grace period after it was told to stop (enforcing)."""
