"""The small abstract base every isolation backend implements (host side).

A backend knows how to start one worker process confined one way, how to
signal and kill it, and where its resource figures come from. It knows
nothing of Jupyter or of the audit log. The session
(:mod:`glsandbox_kernel.session`) is the only caller.

Modelled on ``subprocess.Popen`` and jupyter_client's kernel provisioner:
:meth:`SandboxBackend.start` returns a :class:`WorkerProcess` whose methods
mirror ``poll``/``wait``/``send_signal``/``kill``. Optional hooks do nothing
by default.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import socket
from typing import Any, ClassVar

from .. import procfs
from ..config import IsolationType, OSSandboxConfig
from ..exceptions import ConfinementError, SandboxCrashedError
from ..protocol import FrameChannel


@dataclasses.dataclass
class ResourceSample:
    """One reading of the worker's resource use, taken outside the worker.

    Every field a source cannot measure is ``None``, never 0.
    """

    cpu_time: float | None = None
    memory_current: int | None = None
    memory_peak: int | None = None
    pids: int | None = None
    #: most tasks at once since the cgroup was created, the kernel's own peak (``pids.peak``)
    pids_peak: int | None = None
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    network_bytes_sent: int | None = None
    network_bytes_received: int | None = None
    oom_killed: bool | None = None
    #: file-backed resident bytes now (page cache mapped by the worker; /proc readings only)
    memory_file: int | None = None
    source: str = "none"


def proc_sample(reader: procfs.ProcessReader | None) -> ResourceSample:
    """HOST side: one process's figures from its kept-open /proc fds (``source="procfs"``)."""
    reading = reader.reading() if reader is not None else None
    if reading is None:
        return ResourceSample(source="procfs")
    st = reading.stat
    return ResourceSample(
        cpu_time=st.cpu_seconds,
        memory_current=st.rss_bytes,
        memory_peak=reading.hwm,
        memory_file=reading.rss_file,
        source="procfs",
    )


@dataclasses.dataclass
class ExitInfo:
    """How a worker ended, as seen from outside.

    ``returncode`` follows Popen: negative is the signal number. ``reason`` is
    a limit the backend saw (``"oom"``, ``"pids"``, ``"cpu_time"``) or None.
    """

    returncode: int | None
    reason: str | None = None

    @property
    def signal(self) -> int | None:
        if self.returncode is not None and self.returncode < 0:
            return -self.returncode
        return None


class WorkerProcess(abc.ABC):
    """A started worker, host view. Created by :meth:`SandboxBackend.start`.

    ``sock`` is the host end of the connected stream socket that carries the
    frames of :mod:`glsandbox_kernel.protocol`. ``hello`` and ``chan`` are
    set by :meth:`SandboxBackend.connect` once the worker's first frame was
    read: by the session, or earlier by a warm pool (the session then only
    asks the worker for them).
    """

    sock: socket.socket
    pid: int
    #: The worker's hello frame once read (untrusted data), else None.
    hello: dict[str, Any] | None = None
    #: The channel the hello was read on; keep using it (it may hold read-ahead bytes).
    chan: FrameChannel | None = None

    @abc.abstractmethod
    def poll(self) -> int | None:
        """Return the return code if the worker has ended, else None (like Popen.poll)."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the worker to end; None if still running after ``timeout``."""

    @abc.abstractmethod
    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the worker (the session uses SIGINT for interrupt)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Kill the worker and every process it started. Called on timeout and close."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Release everything the backend made for this worker (dirs, cgroups, containers).

        Called by the session after the worker ended; must be idempotent.
        """

    def retire(self, grace: float = 0.5) -> None:
        """End a worker that was asked to shut down, and release everything it had.

        Called by :meth:`Session.close` after the "shutdown" frame. The default
        waits up to ``grace`` seconds for the worker to exit, kills what is left
        and cleans up, on the caller's thread. A backend may finish this in the
        background instead, off the caller's path; its reaper must then end
        every process and release everything (flushed at interpreter exit).
        """
        if self.wait(grace) is None:
            self.kill()
        self.cleanup()

    def exit_info(self) -> ExitInfo:
        """How the worker ended; backends add a limit reason (e.g. cgroup OOM)."""
        return ExitInfo(self.poll())

    def sample(self) -> ResourceSample:
        """A reading of the worker tree's resource use (monitor thread and per call)."""
        return ResourceSample()

    def call_sample(self) -> ResourceSample:
        """The session's reading at a call's end (the next call's opening one): what the call's
        figures come from. :meth:`sample` unless a backend can read less for it."""
        return self.sample()

    def reset_peak(self) -> None:
        """Start a new peak-memory window (called before each call). Optional."""

    def host_pids(self) -> list[int]:
        """Host pids of every process in the worker tree (for leak checks and monitoring)."""
        return [self.pid]

    def describe(self) -> dict[str, Any]:
        """Facts for the audit record: which controls are in force, what fell back."""
        return {}


class SandboxBackend(abc.ABC):
    """One isolation mechanism. Subclasses live one per module under ``backends/``.

    Registered under the entry-point group ``glsandbox_kernel.backends``; the
    registry (:mod:`glsandbox_kernel.backends.registry`) finds them.
    ``strength`` orders backends for the default choice; ``needs_daemon``
    keeps daemon-based ones out of it.
    """

    name: ClassVar[str]
    isolation_type: ClassVar[IsolationType]
    strength: ClassVar[int] = 0
    needs_daemon: ClassVar[bool] = False

    def __init__(self, config: OSSandboxConfig) -> None:
        self.config = config

    @classmethod
    @abc.abstractmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this backend can run here, and why not (or what it uses)."""

    @classmethod
    def unavailable_hint(cls) -> str:
        """How a user can make this backend available (shown in errors and doctor)."""
        return ""

    @abc.abstractmethod
    def start(self, *, session_id: str) -> WorkerProcess:
        """Start one confined worker for ``session_id``; called by the session.

        Returns the started worker, which may not have said hello yet (the
        session then calls :meth:`connect`; a warm-pool worker is connected
        already), or raises a :class:`~glsandbox_kernel.exceptions.SandboxError`
        (undoing any half-finished setup), e.g. BackendUnavailableError for a
        config this backend cannot enforce.
        """

    def connect(self, worker: WorkerProcess, *, max_frame: int, timeout: float) -> None:
        """Read the worker's hello, hand it to :meth:`on_hello`, set ``worker.hello``/``chan``.

        HOST side. Called by the session (a no-op when a warm pool already
        connected the worker) and by warm pools. Raises
        :class:`~glsandbox_kernel.exceptions.SandboxCrashedError` without a
        hello in time, :class:`~glsandbox_kernel.protocol.WorkerGone` on EOF;
        the caller kills and cleans up the worker.
        """
        if worker.hello is not None:
            return
        chan = FrameChannel(worker.sock, max_frame=max_frame)
        hello, fds = chan.recv_with_fds(timeout=timeout)
        if hello is not None and hello.get("type") == "setup_failed":
            for fd in fds:
                os.close(fd)
            raise setup_failure(hello)
        if hello is None or hello.get("type") != "hello":
            for fd in fds:
                os.close(fd)
            raise SandboxCrashedError("the worker did not say hello in time")
        self.on_hello(worker, hello, fds)
        worker.chan, worker.hello = chan, hello

    def on_hello(self, worker: WorkerProcess, hello: dict[str, Any], fds: list[int]) -> None:
        """Called by :meth:`connect` (from the session or a warm pool) with the worker's
        first frame and the fds it passed.

        Backends that run a seccomp supervisor take the listener fd here. The
        default closes every fd. ``hello`` is untrusted data.
        """
        for fd in fds:
            os.close(fd)

    def add_violation_listener(self, worker: WorkerProcess, listener: Any) -> None:
        """Route violations seen outside the worker (supervisor, proxy) to ``listener``.

        ``listener(record: dict)`` is called from any thread. Optional.
        """

    def close(self) -> None:
        """Release backend-wide resources (pools, daemons); called on session close."""


def setup_failure(frame: dict[str, Any]) -> ConfinementError:
    """HOST side: the error a worker's ``setup_failed`` frame stands for (sent instead of the hello).

    The frame comes from trusted set-up code in the child, but it crossed the
    boundary: only bounded strings and an int errno are taken from it.
    """

    def text(key: str, limit: int) -> str:
        value = frame.get(key)
        return value[:limit] if isinstance(value, str) else ""

    err = frame.get("errno")
    err = err if type(err) is int and 0 < err < 4096 else None
    step, call = text("step", 64), text("call", 512)
    if not step:
        return ConfinementError("worker setup", text("error", 2000) or "failed (no reason given)", err)
    return ConfinementError(step, call or text("error", 2000), err)
