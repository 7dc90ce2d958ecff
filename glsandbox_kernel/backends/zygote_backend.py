"""What every zygote backend shares (HOST side): the worker handle, env, pool, janitor.

:class:`ZygoteWorker` is the host view of a worker forked from the zygote
(:mod:`glsandbox_kernel.zygote`); :data:`POOLS` the warm pools of
pre-confined workers (:mod:`.pool`, ``GLSANDBOX_WARM_POOL``); :data:`JANITOR`
the background thread that releases what dead workers leave
(:mod:`.reaper`); :func:`scrubbed_env` the worker's environment;
:func:`key_of` a warm-pool key.

Who calls: the BASIC, NAMESPACE and CHROOT backends; the container backend
uses :func:`scrubbed_env`; tests use :func:`flush_cleanups` and :data:`POOLS`.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from .. import procfs
from .. import zygote as _zygote
from ..config import OSSandboxConfig
from ..zygote import ZygoteClient
from .base import ExitInfo, ResourceSample, WorkerProcess
from .pool import ZYGOTE_POLICY, PoolGroup
from .reaper import reaper

#: Warm pools of fully confined zygote workers, one per config key.
POOLS: PoolGroup[WorkerProcess] = PoolGroup(ZYGOTE_POLICY)
#: Releases helper threads, directories and cgroups of dead workers, off the caller's path.
JANITOR = reaper("glsandbox-janitor")


def flush_cleanups(timeout: float = 10.0) -> bool:
    """Wait for background cleanups (directories, cgroups) to finish (tests, exit)."""
    return JANITOR.flush(timeout)


def _on_zygote_death(_client: ZygoteClient) -> None:
    # Runs on the dead client's reader thread: drain elsewhere (kill() waits on that client).
    threading.Thread(target=POOLS.drain_all, name="glsandbox-warm-drain", daemon=True).start()


_zygote.on_zygote_death(_on_zygote_death)
atexit.register(POOLS.drain_all)


def scrubbed_env(config: OSSandboxConfig, workdir: str) -> dict[str, str]:
    """The worker's environment: allowlisted host variables plus safe defaults."""
    env = {k: os.environ[k] for k in config.whitelist.allowed_env_vars if k in os.environ}
    env.update(
        {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "MPLCONFIGDIR": os.path.join(workdir, ".matplotlib"),
            "IPYTHONDIR": os.path.join(workdir, ".ipython"),
            "GLSANDBOX": "1",
            # One BLAS/OpenMP thread: per-thread buffers would otherwise eat the
            # memory limit (OpenBLAS reserves ~227 MiB of address space at import).
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    env.update(dict(config.whitelist.env))
    return env


class ZygoteWorker(WorkerProcess):
    """A worker forked from the zygote; ``root_pid`` is the template's direct child.

    For BASIC the root is the worker itself (a child subreaper, so everything
    it starts stays below it); namespace plans put their set-up processes there.

    Created by :meth:`BasicBackend.start` (and the namespace/chroot backends).
    """

    def __init__(self, *, zygote: ZygoteClient, root_pid: int, sock: socket.socket, workdir: str | None) -> None:
        self.zygote = zygote
        self.root_pid = root_pid
        self.sock = sock
        self.pid = root_pid
        self.workdir = workdir
        self._cleaned = False
        self.supervisor: Any = None
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._early: list[dict[str, Any]] = []
        self._listeners_lock = threading.Lock()
        #: The session this worker serves (a warm-pool worker gets it at the handover).
        self.session_id: str | None = None

    def attach_supervisor(self, listener_fd: int, config: OSSandboxConfig) -> None:
        """Answer the worker's seccomp notifications on a host thread (called from on_hello)."""
        from ..supervisor import Supervisor, SupervisorPolicy

        policy = SupervisorPolicy(
            deny_exec=not config.new_programs_allowed,
            allowed_executables=tuple(config.whitelist.allowed_executables),
        )
        self.supervisor = Supervisor(listener_fd, on_violation=self._violation, policy=policy)

    def _violation(self, record: dict[str, Any]) -> None:
        """Supervisor/proxy thread: deliver, or keep until a session listens (warm pool)."""
        with self._listeners_lock:
            listeners = list(self._listeners)
            if not listeners:
                self._early.append(record)
        for listener in listeners:
            listener(record)

    def add_violation_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Route supervisor violations to ``listener`` (the session), those seen before first."""
        with self._listeners_lock:
            self._listeners.append(listener)
            early, self._early = self._early, []
        for record in early:
            listener(record)

    def assign_session(self, session_id: str) -> None:
        """HOST side: the session this worker now serves (a warm-pool worker's handover)."""
        self.session_id = session_id

    def set_worker_pid(self, pid: int) -> None:
        """Called by the backend once the hello frame named the worker's host pid."""
        self.pid = pid
        self._close_proc_fds()
        self._proc = procfs.ProcessReader(pid)

    _proc: procfs.ProcessReader | None = None

    def _close_proc_fds(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None

    def poll(self) -> int | None:
        return self.zygote.returncode(self.root_pid)

    def wait(self, timeout: float | None = None) -> int | None:
        return self.zygote.wait(self.root_pid, timeout)

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def host_pids(self) -> list[int]:
        if self.poll() is not None:
            return []
        return [self.root_pid, *procfs.descendants(self.root_pid)]

    def kill(self) -> None:
        """SIGKILL the whole tree, deepest first, then its root; wait for the root."""
        for _ in range(20):
            if self.poll() is not None:
                break
            tree = procfs.descendants(self.root_pid)
            for pid in reversed(tree):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not tree:
                try:
                    os.kill(self.root_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self.wait(0.05) is not None:
                break
        else:
            try:
                os.kill(self.root_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(2.0)

    def cleanup(self) -> None:
        """Release the worker's resources; the slow part (threads, rmtree) in the background.

        Called by the session once the worker has ended (or was killed).
        """
        if self._cleaned:
            return
        self._cleaned = True
        self._close_proc_fds()
        try:
            self.sock.close()
        except OSError:
            pass
        if self.poll() is not None:
            self.zygote.forget(self.root_pid)
        JANITOR.submit(self._release)

    def _release(self) -> None:
        """Janitor thread: stop the supervisor, remove the working directory."""
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def exit_info(self) -> ExitInfo:
        return ExitInfo(self.poll())

    def sample(self) -> ResourceSample:
        """Worker-process figures from /proc (cheap: kept-open fds, used per call)."""
        reading = self._proc.read() if self._proc is not None else None
        if reading is None:
            return ResourceSample(source="procfs")
        st, peak = reading
        return ResourceSample(cpu_time=st.cpu_seconds, memory_current=st.rss_bytes, memory_peak=peak, source="procfs")

    def reset_peak(self) -> None:
        procfs.clear_refs(self.pid)


def key_of(backend: str, plan: dict[str, Any], config: OSSandboxConfig) -> str:
    """A warm-pool key: a digest of the placeholder plan, the config and the interpreter."""
    blob = json.dumps(
        {"backend": backend, "python": sys.executable, "euid": os.geteuid(), "plan": plan, "config": config.to_dict()},
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()
