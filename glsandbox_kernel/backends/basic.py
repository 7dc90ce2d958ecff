"""BASIC backend: a forked worker with rlimits, scrubbed env, private cwd (host side).

The worker is forked from the zygote (:mod:`glsandbox_kernel.zygote`) and
confined by the child-side steps the plan names (rlimits, no_new_privs,
umask 077, and where the kernel has them Landlock and seccomp). Needs no root.
:class:`ZygoteWorker` is reused by the namespace and chroot backends.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from typing import Any, ClassVar

from .. import procfs
from ..config import IsolationType
from ..zygote import get_zygote
from .base import SandboxBackend, WorkerProcess
from .zygote_backend import POOLS, ZygoteWorker, flush_cleanups, key_of, scrubbed_env

__all__ = ["BasicBackend", "ZygoteWorker", "flush_cleanups", "scrubbed_env"]


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
        return key_of(self.name, self.child_plan("<workdir>"), self.config)

    def start(self, *, session_id: str) -> WorkerProcess:
        """A fully confined worker: from the warm pool when one is ready, else started now.

        A pooled worker has said hello already (``worker.hello``); the pool is
        topped up in the background either way.
        """
        if POOLS.size() <= 0:
            worker = self.start_fresh(session_id=session_id)
        else:
            pool = POOLS.get(self.pool_key(), self._launch_pooled)
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
            if type(pid) is int and (pid == worker.root_pid or pid in procfs.descendants(worker.root_pid)):
                worker.set_worker_pid(pid)
            else:
                kids = procfs.children_of(worker.root_pid)
                if kids:
                    worker.set_worker_pid(kids[0])
        for fd in fds:
            os.close(fd)

    def add_violation_listener(self, worker: WorkerProcess, listener: Any) -> None:
        if isinstance(worker, ZygoteWorker):
            worker.add_violation_listener(listener)
