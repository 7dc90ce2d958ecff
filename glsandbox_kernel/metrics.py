"""SandboxMetrics and the monitor thread (host side).

Figures are measured outside the worker: /proc, cgroups, the container
runtime, the network proxy. A field nobody measured is ``None``, never 0.

:class:`Monitor` samples the worker tree at a bounded rate (4 Hz by default)
only while a call is running, keeps the peaks, and hands each sample to live
listeners (the notebook widget). Costs nothing while the session is idle.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .backends.base import ResourceSample, WorkerProcess
from .hostloop import LOOP, Timer
from .sockmem import DiagSockets

if TYPE_CHECKING:
    from .disk_guard import DiskGuard

log = logging.getLogger("glsandbox.metrics")


@dataclasses.dataclass
class SandboxMetrics:
    """Resource use of one call (``OSSandbox.metrics``) or a running total.

    The seed's fields, plus ``isolation_type``, ``fallback`` (the backend
    that was wanted when BASIC ran instead), ``state_lost`` and the limits
    source (``"cgroup"``, ``"rlimit"``...).

    ``pids_peak``: the most tasks (processes and threads) the sandbox ran at
    once in the call. Where the kernel keeps a peak (cgroup ``pids.peak``:
    v2 since Linux 6.1, v1 on recent kernels) it is the kernel's figure when
    the call set the sandbox's new high; otherwise (no kernel peak: BASIC,
    /proc readings; or a call below an earlier call's high) it is the
    highest of the monitor's samples (every 0.25 s), a lower bound that can
    miss a burst shorter than a sampling period.

    ``disk_read_bytes`` / ``disk_write_bytes``: block I/O the cgroup's io
    controller attributes to the sandbox. cgroup v1 sees no buffered
    writeback (the flusher threads write it), so there writes are None.
    """

    cpu_time_used: float | None = None
    memory_peak_bytes: int | None = None
    memory_current_bytes: int | None = None
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    network_bytes_sent: int | None = None
    network_bytes_received: int | None = None
    syscalls_made: int | None = None
    violations_detected: int = 0
    escape_attempts: int = 0
    execution_time: float | None = None
    setup_time: float | None = None
    cleanup_time: float | None = None
    pids_peak: int | None = None
    isolation_type: str | None = None
    fallback: str | None = None
    state_lost: bool = False
    measured_by: str | None = None
    calls: int = 0

    def forget_figures(self) -> None:
        """HOST side (the session, ``enable_metrics=False``): drop what was measured for enforcement only."""
        for name in _MEASURED:
            setattr(self, name, None)

    def to_dict(self) -> dict[str, Any]:
        values = self.__dict__  # the fields, read without a getattr each (once per call and record)
        return {name: values[name] for name in _METRIC_FIELDS}

    def accumulate(self, other: SandboxMetrics) -> None:
        """Add ``other`` (one call) into this running total."""
        mine, theirs = self.__dict__, other.__dict__
        for name in _SUMMED:
            b = theirs[name]
            if b is not None:
                a = mine[name]
                mine[name] = b if a is None else a + b
        for name in ("memory_peak_bytes", "pids_peak"):
            b = theirs[name]
            if b is not None:
                a = mine[name]
                mine[name] = b if a is None else max(a, b)
        if other.memory_current_bytes is not None:
            self.memory_current_bytes = other.memory_current_bytes
        self.violations_detected += other.violations_detected
        self.escape_attempts += other.escape_attempts
        self.calls += other.calls
        self.isolation_type = other.isolation_type or self.isolation_type
        self.fallback = other.fallback or self.fallback
        self.measured_by = other.measured_by or self.measured_by
        self.state_lost = self.state_lost or other.state_lost


_METRIC_FIELDS = tuple(f.name for f in dataclasses.fields(SandboxMetrics))
#: the figures the outside monitor reads (None unless measured and reported)
_MEASURED = (
    "cpu_time_used",
    "memory_peak_bytes",
    "memory_current_bytes",
    "disk_read_bytes",
    "disk_write_bytes",
    "network_bytes_sent",
    "network_bytes_received",
    "pids_peak",
    "measured_by",
)
#: the fields a running total adds up
_SUMMED = (
    "cpu_time_used",
    "execution_time",
    "setup_time",
    "cleanup_time",
    "disk_read_bytes",
    "disk_write_bytes",
    "network_bytes_sent",
    "network_bytes_received",
    "syscalls_made",
)

Listener = Callable[[dict[str, Any]], None]


class Monitor:
    """Samples a worker while a call runs; one per session, on the shared host loop.

    ``begin()``/``end()`` bracket a call (called by the session). After a
    short delay (so quick calls cost nothing) the process's one host loop
    thread (:mod:`glsandbox_kernel.hostloop`) samples every ``interval``
    seconds, tracking the peak memory and pids of the whole tree and holding
    ``cpu_time_limit_seconds`` for all of its processes together
    (:attr:`cpu_limit`: killed past it, the period shortened near it). No thread
    per session, and nothing at all while the session is idle: the timer is
    set again only while calls keep running. Listeners run on the loop
    thread and must be quick.
    """

    def __init__(self, interval: float = 0.25, delay: float = 0.05) -> None:
        self.interval = interval
        self.delay = delay
        self.listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._worker: WorkerProcess | None = None
        self._active = False
        self._started_at = 0.0
        self._timer: Timer | None = None
        self._closed = False
        self.peak_memory: int | None = None
        self.peak_pids: int | None = None
        self.last: ResourceSample | None = None
        self.context: dict[str, Any] = {}
        #: Set by the session where no cgroup enforces the memory limit (see :mod:`.memory_guard`).
        self.memory_limit: int | None = None
        #: the worker's sock_diag sockets (the guard counts its socket buffers), kept while it serves
        self._diag: tuple[WorkerProcess, DiagSockets] | None = None
        #: (limit, resident) once the guard killed the tree in this call.
        self.memory_exceeded: tuple[int, int] | None = None
        #: why the guard could not read the tree's socket memory, once it killed the tree for it
        self.memory_unmeasured: str | None = None
        #: the guard's highest reading in this call (anonymous + shared memory of the tree).
        self.peak_resident: int | None = None
        #: Set by the session where nothing else holds the tree to ``max_processes`` (BASIC as
        #: root: the kernel never applies RLIMIT_NPROC to uid 0): tasks (threads) of the tree.
        self.task_limit: int | None = None
        #: (limit, tasks) once the guard killed the tree for too many tasks in this call.
        self.tasks_exceeded: tuple[int, int] | None = None
        #: Set by the session: ``cpu_time_limit_seconds`` for the whole tree (RLIMIT_CPU holds one
        #: process only): CPU of every process of the sandbox since ``cpu_base`` was read.
        self.cpu_limit: float | None = None
        #: the tree's CPU reading (same source) when the session got this worker; None: not yet read.
        self.cpu_base: float | None = None
        #: (limit, used) once the monitor killed the tree for CPU time (this call or at its end).
        self.cpu_exceeded: tuple[float, float] | None = None
        self._cpu_left: float | None = None  # CPU seconds left at the last reading (sets the period)
        #: the tree's reading right after the monitor killed it for a limit in this call (its closing one)
        self.killed_reading: ResourceSample | None = None
        #: Set by :meth:`for_config` with a disk quota: the host folders' count (:mod:`.disk_guard`).
        self.disk: DiskGuard | None = None

    @classmethod
    def for_config(cls, config: Any) -> Monitor:
        """The session's monitor for an OSSandboxConfig: the limits it holds from outside (resident memory
        where no cgroup does, the tree's CPU time: RLIMIT_CPU holds one process only, the disk quota)."""
        from .disk_guard import guard_for

        mon = cls()
        mon.memory_limit = config.limits.memory_limit_bytes
        mon.cpu_limit = config.limits.cpu_time_limit_seconds
        mon.disk = guard_for(config)
        return mon

    def begin(self, worker: WorkerProcess, context: dict[str, Any] | None = None) -> None:
        """Mark a call as running (hot path: state, and a timer only when none is set)."""
        self._worker = worker
        self.peak_memory = None
        self.peak_pids = None
        self.last = None
        self.memory_exceeded = None
        self.memory_unmeasured = None
        self.tasks_exceeded = None
        self.cpu_exceeded = None
        self.killed_reading = None
        self.peak_resident = None
        self.context = context or {}
        if self.disk is not None:
            self.disk.watch(worker, self._kill)  # from the worker's first call; nothing more on the next ones
        self._started_at = time.monotonic()
        self._active = True
        if self._timer is None and not self._closed:
            with self._lock:
                if self._timer is None:
                    self._timer = LOOP.call_at(self._started_at + self.delay, self._tick)

    def fresh_worker(self, worker: WorkerProcess, cpu_base: float | None) -> None:
        """Before a new worker's first request is sent (the session): its CPU budget starts at ``cpu_base``,
        and the disk guard counts the host folders before it can write (a fast writer outran a count begun
        with the call: 128 MiB were on disk before it started)."""
        self.cpu_base = cpu_base
        if self.disk is not None:
            self.disk.watch(worker, self._kill)

    def end(self) -> None:
        self._active = False

    def keep_final(self, worker: WorkerProcess) -> None:
        """HOST side, the session between killing a worker mid-call and cleaning it up: the tree's
        closing reading (a cgroup's figures outlive the tree until cleanup), so a crashed or killed
        call still has its CPU time. Nothing outside a call, nor over a limit kill's own reading."""
        if not self._active or self.killed_reading is not None or worker is not self._worker:
            return
        try:
            final = worker.sample()
        except Exception:  # noqa: BLE001 - gone with its cgroup: the call's figures stay unmeasured
            return
        if final.cpu_time is not None:
            self.killed_reading = final

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._active = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._diag is not None:
            self._diag[1].close()
            self._diag = None
        if self.disk is not None:
            self.disk.close()

    def _diag_for(self, worker: WorkerProcess) -> DiagSockets:
        """Monitor thread: the sock_diag view of ``worker`` (a new one when the worker changed)."""
        if self._diag is None or self._diag[0] is not worker:
            if self._diag is not None:
                self._diag[1].close()
            self._diag = (worker, DiagSockets())
        return self._diag[1]

    def _tick(self) -> None:
        """Host loop thread: sample a call that has run ``delay`` seconds; set the next timer."""
        started, worker = self._started_at, self._worker
        now = time.monotonic()
        due: float | None = None
        if self._active and worker is not None and not self._closed:
            if now - started >= self.delay:
                try:
                    self._sample(worker, started)
                except Exception:  # a failed reading must not stop this session's sampling for good
                    log.warning("monitor sample failed", exc_info=True)
                due = now + self._period()
            else:
                due = started + self.delay  # a newer call began since: wait for its delay
        with self._lock:
            self._timer = None if due is None or self._closed else LOOP.call_at(due, self._tick)

    def _guard_tasks(self, worker: WorkerProcess, limit: int) -> None:
        """Monitor thread: kill the tree when it runs more tasks than ``limit`` (HOST side, outside)."""
        from . import procfs

        tasks = sum(n for n in (procfs.threads(pid) for pid in worker.host_pids()) if n is not None)
        self.peak_pids = max(self.peak_pids or 0, tasks)
        if tasks > limit:
            self.tasks_exceeded = (limit, tasks)
            worker.kill()

    def _period(self) -> float:
        """The next sampling period: ``interval``, shorter once the CPU budget left would last less
        than that on every core (down to 20 ms), so the overshoot past the limit stays small."""
        left = self._cpu_left
        if left is None:
            return self.interval
        return min(self.interval, max(0.02, left / (os.cpu_count() or 1)))

    def _kill(self, worker: WorkerProcess) -> None:
        """A short-lived thread: kill the tree past the CPU limit, then keep the final reading.

        Every process of the sandbox (its cgroup's, or the tree's) is SIGKILLed first, as the OOM
        killer would: a gVisor container's orderly kill goes through its runtime and lets the
        sandbox run on for a second or more. ``worker.kill()`` then ends it the backend's way."""
        for pid in worker.host_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:  # gone, or not ours to signal (rootless): the backend's kill follows
                pass
        try:
            worker.kill()
        except Exception:  # the session, seeing the worker gone, may be cleaning it up
            log.debug("CPU-limit kill raced the session's own cleanup", exc_info=True)
        try:  # the cgroup's figures outlive the tree until cleanup: the call's final CPU reading
            final = worker.sample()
        except Exception:  # noqa: BLE001 - gone: the reading that tripped the limit stays
            return
        if final.cpu_time is not None and self.cpu_exceeded is not None:
            self.killed_reading = final

    @property
    def cpu_left(self) -> float | None:
        """CPU seconds the tree had left under :attr:`cpu_limit` at the last reading (None before one)."""
        return self._cpu_left

    def cpu_over(self, cpu_time: float | None) -> float | None:
        """The tree's CPU seconds used since :attr:`cpu_base` when past :attr:`cpu_limit`, else None.

        Who calls: :meth:`_sample` (every sampling period of a call) and the session at a call's
        end. The first reading that has a figure becomes the base when none was read yet.
        """
        if self.cpu_limit is None or cpu_time is None:
            return None
        if self.cpu_base is None:
            self.cpu_base = cpu_time
            return None
        used = cpu_time - self.cpu_base
        self._cpu_left = self.cpu_limit - used
        return used if used > self.cpu_limit else None

    def _sample(self, worker: WorkerProcess, started: float) -> None:
        try:
            sample = tree_sample(worker)
        except Exception:  # noqa: BLE001 - the worker may vanish mid-read
            return
        self.last = sample
        over = self.cpu_over(sample.cpu_time)
        if over is not None and self._active and self.cpu_limit is not None and self.cpu_exceeded is None:
            # The whole tree past the CPU time limit, measured outside (HOST side): killed, as for memory.
            self.cpu_exceeded = (self.cpu_limit, over)
            self.killed_reading = sample  # the session may read it before the kill returns
            # Off the loop: a container's kill waits for its runtime (seconds on gVisor), and this
            # thread samples every session.
            threading.Thread(target=self._kill, args=(worker,), name="glsandbox-limit-kill", daemon=True).start()
        if self.memory_limit is not None and sample.source.startswith("procfs"):
            from .memory_guard import tree_resident

            try:
                resident = tree_resident(worker.host_pids(), self._diag_for(worker))
            except OSError as exc:  # the sockets' memory cannot be read: the limit cannot be held, fail closed
                log.error("cannot measure the sandbox's socket memory; killing it", exc_info=True)
                self.memory_unmeasured = str(exc) or type(exc).__name__
                worker.kill()
                resident = None
            if resident is not None:
                self.peak_resident = max(self.peak_resident or 0, resident)
                self.peak_memory = max(self.peak_memory or 0, resident)  # socket buffers are in no RSS
                if resident > self.memory_limit and self._active:
                    self.memory_exceeded = (self.memory_limit, resident)
                    worker.kill()
        if self.task_limit is not None and self._active:
            self._guard_tasks(worker, self.task_limit)
        if sample.memory_current is not None:
            self.peak_memory = max(self.peak_memory or 0, sample.memory_current)
        if sample.memory_peak is not None:
            self.peak_memory = max(self.peak_memory or 0, sample.memory_peak)
        if sample.pids is not None:
            self.peak_pids = max(self.peak_pids or 0, sample.pids)
        if self.listeners:
            event = {
                "elapsed": time.monotonic() - started,
                "cpu_time": sample.cpu_time,
                "memory_current": sample.memory_current,
                "memory_peak": self.peak_memory,
                "pids": sample.pids,
                "source": sample.source,
                **self.context,
            }
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:  # noqa: BLE001 - a broken widget must not stop sampling
                    pass


def tree_sample(worker: WorkerProcess) -> ResourceSample:
    """A whole-tree reading: the backend's own source when it has one, else /proc."""
    sample = worker.sample()
    if sample.source not in ("procfs", "none"):
        return sample
    from .procfs import tree_cpu_rss

    cpu, rss, seen = tree_cpu_rss(worker.host_pids())
    if not seen:
        return sample
    return ResourceSample(
        cpu_time=cpu,
        memory_current=rss,
        memory_peak=sample.memory_peak,
        pids=seen,
        source="procfs-tree",
    )


def tree_cpu(worker: WorkerProcess, reading: ResourceSample) -> float | None:
    """The whole tree's CPU seconds, from the source the monitor samples (HOST side): ``reading``'s
    own figure where it covers the tree (a cgroup, the runtime), else /proc over the tree."""
    if reading.source not in ("procfs", "none"):
        return reading.cpu_time
    try:
        return tree_sample(worker).cpu_time
    except (OSError, ProcessLookupError):
        return None


def call_pids_peak(before: ResourceSample | None, after: ResourceSample | None, sampled: int | None) -> int | None:
    """A call's ``pids_peak``: the kernel's ``pids.peak`` when it rose during the call (the call set
    the sandbox's high: exact), else the monitor's highest sample (see :class:`SandboxMetrics`)."""
    high = after.pids_peak if after is not None else None
    low = before.pids_peak if before is not None else None
    if high is not None and low is not None and high > low:
        return high
    return sampled


def fill_call_figures(metrics: SandboxMetrics, before: Any, after: Any, mon: Monitor) -> None:
    """HOST side (``Session``, after a call): the call's figures from its opening and closing readings
    (``ResourceSample``, either may be None: a figure not measured stays None) and the monitor's peaks."""
    if before is not None and after is not None:
        if before.cpu_time is not None and after.cpu_time is not None:
            metrics.cpu_time_used = max(0.0, after.cpu_time - before.cpu_time)
        metrics.memory_current_bytes = after.memory_current
        if after.source != "procfs":  # a process's /proc reading (the BASIC warm call) has no I/O counters
            for name in ("disk_read_bytes", "disk_write_bytes", "network_bytes_sent", "network_bytes_received"):
                a, b = getattr(before, name), getattr(after, name)
                if a is not None and b is not None:
                    setattr(metrics, name, max(0, b - a))
        metrics.measured_by = after.source
    peaks = [p for p in (after.memory_peak if after else None, mon.peak_memory) if p is not None]
    metrics.memory_peak_bytes = max(peaks) if peaks else None
    metrics.pids_peak = call_pids_peak(before, after, mon.peak_pids)
