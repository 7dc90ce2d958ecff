"""BASIC backend: a forked worker with rlimits, scrubbed env, private cwd (host side).

The worker is forked from the zygote (:mod:`glsandbox_kernel.zygote`) and
confined by the child-side steps the plan names (rlimits, no_new_privs,
umask 077, and where the kernel has them Landlock and seccomp). Needs no root.
:class:`ZygoteWorker` is reused by the namespace and chroot backends.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from ..config import IsolationType, OSSandboxConfig
from ..zygote import ZygoteClient, children_of, get_zygote
from .base import ExitInfo, ResourceSample, SandboxBackend, WorkerProcess

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


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


def read_proc_stat(pid: int) -> tuple[float, int] | None:
    """(cpu seconds incl. waited children, rss bytes) of ``pid`` from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / _CLK_TCK, int(fields[21]) * _PAGE


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (breadth first), read from /proc."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = children_of(p)
        out.extend(kids)
        todo.extend(kids)
    return out


class _Janitor:
    """HOST side: releases what dead workers leave (helper threads, directories, cgroups)
    on one background thread, after the caller has its result.

    Only work that cannot leave a process behind comes here: every worker's
    processes are gone before its cleanup is submitted. :func:`flush_cleanups`
    waits for it (tests, interpreter exit).
    """

    def __init__(self) -> None:
        self._todo: collections.deque[Callable[[], None]] = collections.deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            self._todo.append(job)
            self._busy += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="glsandbox-janitor", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._todo and not self._cond.wait_for(lambda: bool(self._todo), timeout=5.0):
                    self._thread = None
                    return
                job = self._todo.popleft()
            try:
                job()
            except Exception:  # noqa: BLE001 - one failed removal must not stop the others
                pass
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted job has run; True if done in time."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout=timeout)


_JANITOR = _Janitor()


def flush_cleanups(timeout: float = 10.0) -> bool:
    """Wait for background cleanups (directories, cgroups) to finish (tests, exit)."""
    return _JANITOR.flush(timeout)


atexit.register(flush_cleanups)


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
        try:
            self._stat_fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            self._status_fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._close_proc_fds()

    _stat_fd: int | None = None
    _status_fd: int | None = None

    def _close_proc_fds(self) -> None:
        for name in ("_stat_fd", "_status_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

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
        return [self.root_pid, *descendants(self.root_pid)]

    def kill(self) -> None:
        """SIGKILL the whole tree, deepest first, then its root; wait for the root."""
        for _ in range(20):
            if self.poll() is not None:
                break
            tree = descendants(self.root_pid)
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
        _JANITOR.submit(self._release)

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
        if self._stat_fd is None or self._status_fd is None:
            return ResourceSample(source="procfs")
        try:
            stat = os.pread(self._stat_fd, 4096, 0)
            status = os.pread(self._status_fd, 8192, 0)
        except OSError:
            return ResourceSample(source="procfs")
        fields = stat.rsplit(b")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / _CLK_TCK
        rss = int(fields[21]) * _PAGE
        peak = None
        i = status.find(b"VmHWM:")
        if i >= 0:
            peak = int(status[i + 6 : status.index(b"kB", i)]) * 1024
        return ResourceSample(cpu_time=cpu, memory_current=rss, memory_peak=peak, source="procfs")

    def reset_peak(self) -> None:
        try:
            fd = os.open(f"/proc/{self.pid}/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.write(fd, b"5")
        except OSError:
            pass
        finally:
            os.close(fd)


class BasicBackend(SandboxBackend):
    """Process isolation with rlimits; works everywhere on POSIX without root."""

    name: ClassVar[str] = "basic"
    isolation_type: ClassVar[IsolationType] = IsolationType.BASIC
    strength: ClassVar[int] = 10

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if os.name != "posix":
            return False, "needs a POSIX system"
        return True, "forked worker with rlimits, scrubbed environment, private working directory"

    def child_plan(self, workdir: str) -> dict[str, Any]:
        """The child-side steps for this backend (see :mod:`glsandbox_kernel.confinement`)."""
        from ..confinement import build_child_plan

        plan = dict(build_child_plan(self.config, backend=self.name, workdir=workdir))
        return self.add_process_fields(plan, workdir)

    def add_process_fields(self, plan: dict[str, Any], workdir: str) -> dict[str, Any]:
        """The worker process's own settings, shared by every zygote backend (HOST side):
        scrubbed environment, the host's import path as it is now, cwd, umask 077."""
        plan["env"] = scrubbed_env(self.config, workdir)
        plan["sys_path"] = [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]
        plan["cwd"] = workdir
        plan["umask"] = 0o077
        return plan

    def make_workdir(self, session_id: str) -> str:
        return tempfile.mkdtemp(prefix=f"glsandbox-{session_id[:8]}-")

    def pool_key(self) -> str:
        """What a warm-pool worker must share with this config to be handed out (HOST side).

        The child plan built with placeholders for the per-worker parts, plus
        the whole config (limits, network, supervisor policy) and the interpreter.
        """
        return _key_of(self.name, self.child_plan("<workdir>"), self.config)

    def start(self, *, session_id: str) -> WorkerProcess:
        """A fully confined worker: from the warm pool when one is ready, else started now.

        A pooled worker has said hello already (``worker.hello``); the pool is
        topped up in the background either way.
        """
        from . import warm_pool

        if warm_pool.pool_size() <= 0:
            worker = self.start_fresh(session_id=session_id)
        else:
            pool = warm_pool.get_pool(self.pool_key(), self._launch_pooled)
            taken = pool.take()
            pool.refill()
            worker = taken if taken is not None else self.start_fresh(session_id=session_id)
        if isinstance(worker, ZygoteWorker):
            worker.assign_session(session_id)
        return worker

    def _launch_pooled(self) -> WorkerProcess:
        """Warm-pool filler thread: start a worker and read its hello; undo on failure."""
        from ..session import HELLO_TIMEOUT

        worker = self.start_fresh(session_id="warmpool")
        try:
            self.connect(worker, max_frame=self.config.max_frame_bytes, timeout=HELLO_TIMEOUT)
        except BaseException:
            worker.kill()
            worker.cleanup()
            raise
        return worker

    def start_fresh(self, *, session_id: str) -> WorkerProcess:
        """Fork a new confined worker for ``session_id`` (not yet connected)."""
        workdir = self.make_workdir(session_id)
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            plan = self.child_plan(workdir)
            zygote = get_zygote(sys.executable)
            root = zygote.spawn(plan, child_end)
        except BaseException:
            host_end.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            child_end.close()
        return ZygoteWorker(zygote=zygote, root_pid=root, sock=host_end, workdir=workdir)

    def on_hello(self, worker: WorkerProcess, hello: dict[str, Any], fds: list[int]) -> None:
        """Called by the session with the worker's first frame and any fds it passed.

        The only fd a zygote worker passes is its seccomp listener: the
        supervisor takes it. ``hello`` is untrusted; the pid is checked
        against the tree the template reported.
        """
        if isinstance(worker, ZygoteWorker) and fds:
            worker.attach_supervisor(fds.pop(0), self.config)
        if isinstance(worker, ZygoteWorker):
            pid = hello.get("pid")
            if type(pid) is int and (pid == worker.root_pid or pid in descendants(worker.root_pid)):
                worker.set_worker_pid(pid)
            else:
                kids = children_of(worker.root_pid)
                if kids:
                    worker.set_worker_pid(kids[0])
        for fd in fds:
            os.close(fd)

    def add_violation_listener(self, worker: WorkerProcess, listener: Any) -> None:
        if isinstance(worker, ZygoteWorker):
            worker.add_violation_listener(listener)


def _key_of(backend: str, plan: dict[str, Any], config: OSSandboxConfig) -> str:
    """A warm-pool key: a digest of the placeholder plan, the config and the interpreter."""
    blob = json.dumps(
        {"backend": backend, "python": sys.executable, "euid": os.geteuid(), "plan": plan, "config": config.to_dict()},
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()
