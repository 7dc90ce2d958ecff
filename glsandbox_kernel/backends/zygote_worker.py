"""Host-side handles of zygote-forked workers (HOST side).

:class:`ZygoteWorker`: a worker forked from the zygote, sampled from /proc,
its working directory and supervisor released in the background.
:class:`NamespaceWorker`: the same plus what a namespaced sandbox has
around it on the host (cgroup, network proxy, and the set-up processes:
the init, pid 1 of the sandbox, and, where the template did not clone the
init straight into the namespaces, the process above it that unshared
them). Made by :class:`~.zygote_backend.ZygoteBackend`.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import threading
import time
import uuid
from typing import Any

from .. import procfs
from ..exceptions import SandboxError
from ..procfs import descendants, start_time
from ..zygote import ZygoteClient
from .base import ExitInfo, ResourceSample, WorkerProcess, proc_sample
from .reaper import reaper
from .scratch import remove_scratch
from .violations import ViolationRelay

#: Releases helper threads, directories and cgroups of dead workers, off the caller's path.
JANITOR = reaper("glsandbox-janitor")


def flush_cleanups(timeout: float = 10.0) -> bool:
    """Wait for background cleanups (directories, cgroups) to finish (tests, exit)."""
    return JANITOR.flush(timeout)


class ZygoteWorker(WorkerProcess, ViolationRelay):
    """A worker forked from the zygote; ``root_pid`` is the template's direct child.

    For BASIC the root is the worker itself (a child subreaper, so everything
    it starts stays below it); namespace plans put their set-up processes there.
    ``cgroup``: the sandbox's own cgroup (profile ``cgroup``), or None: the
    host moves the tree into it (:meth:`start_early_attach`,
    :meth:`finish_attach`), reads its figures and removes it after the worker.

    Created by :meth:`~.zygote_backend.ZygoteBackend.start_fresh`.
    """

    #: Whether set-up processes below the root are forked before the hello (namespace plans):
    #: the early attach then moves them as they appear.
    _SETUP_CHILDREN = False

    def __init__(
        self, *, zygote: ZygoteClient, root_pid: int, sock: socket.socket, workdir: str | None, cgroup: Any = None
    ) -> None:
        self.zygote = zygote
        self.root_pid = root_pid
        self.sock = sock
        self.pid = root_pid
        self.workdir = workdir
        self.cgroup = cgroup
        self._cleaned = False
        self.init_violations()
        #: The session this worker serves (a warm-pool worker gets it at the handover).
        self.session_id: str | None = None

    def assign_session(self, session_id: str) -> None:
        """HOST side: the session this worker now serves (a warm-pool worker's handover).

        The cgroup is renamed after the session in place (cgroup v1 allows it;
        no migration, no RCU wait). Where the kernel refuses (cgroup v2), the
        name stays and ``describe()`` still names the session next to it.
        """
        self.session_id = session_id
        if self.cgroup is not None and not self.cgroup.name.startswith(session_id[:12]):
            with contextlib.suppress(OSError):
                self.cgroup.rename(f"{session_id[:12]}-{uuid.uuid4().hex[:6]}")

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

    def start_early_attach(self) -> None:
        """HOST side: move the sandbox's processes into the cgroup while they set up.

        A cgroup migration first waits for an RCU grace period (about 15 ms
        on a small VM); migrations soon after need not. A thread moves the
        root process at once, then (namespace plans) each new process of the
        tree whose parent had not been moved when it forked, so the wait overlaps with the
        sandbox's own set-up and :meth:`finish_attach` usually has nothing
        left to do.
        """
        self._attach_error: BaseException | None = None
        self._attach_stop = threading.Event()

        def run() -> None:
            try:
                self.cgroup.attach([self.root_pid])
                # Until the worker (the process below the root, the init) exists
                # and is inside, a process may fork before it was moved.
                while self._SETUP_CHILDREN and not self._attach_stop.wait(0.002) and self.poll() is None:
                    tree = descendants(self.root_pid)
                    self.cgroup.attach(tree)
                    if len(tree) >= 1:
                        return
            except BaseException as exc:  # noqa: BLE001 - re-raised by finish_attach
                self._attach_error = exc

        self._attach_thread = threading.Thread(target=run, name="glsandbox-cgroup-attach", daemon=True)
        self._attach_thread.start()

    def finish_attach(self) -> None:
        """HOST side, after the hello: make sure every process of the sandbox is in the cgroup.

        Runs before any untrusted code, when nothing in the sandbox forks, so
        no process can be left outside. Raises the early attach's error.
        """
        thread = getattr(self, "_attach_thread", None)
        if thread is not None:
            self._attach_stop.set()
            thread.join()
            if self._attach_error is not None:
                raise self._attach_error
        self.cgroup.attach([self.root_pid, *descendants(self.root_pid)])

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
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.kill_all()

    def retire(self, grace: float = 0.5) -> None:
        """Session.close, after "shutdown": end the tree now, release the rest off the caller's path.

        The worker's answer to "shutdown" is ``os._exit(0)``, so killing the tree
        at once ends it the same way, but every process at the same time instead
        of one after the other down the set-up chain. Returns when every process
        of the tree is dead (pidfds, no polling of /proc); the template's exit
        notice, threads, directories and cgroups are left to the janitor
        (:func:`flush_cleanups` and interpreter exit wait for it).
        """
        fds = self._tree_pidfds()
        for fd in fds:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + max(grace, 2.0)
        left = len(fds)
        while left and time.monotonic() < deadline:
            for fd, _ in poller.poll(50):  # a pidfd turns readable when its process exits
                poller.unregister(fd)
                left -= 1
        for fd in fds:
            os.close(fd)
        JANITOR.submit(lambda: self._retire_now(grace))

    def _tree_pidfds(self) -> list[int]:
        """HOST side: pidfds of every process of the tree, deepest first (a pidfd names its
        process for good: no signal can reach a recycled pid through it)."""
        fds = []
        for pid in reversed(self.host_pids()):
            with contextlib.suppress(OSError):
                fds.append(os.pidfd_open(pid))
        return fds

    def _retire_now(self, grace: float) -> None:
        """Janitor thread: the template's exit notice (kill again if a process is left), cleanup."""
        if self.wait(grace) is None:
            self.kill()
        self.cleanup()

    def cleanup(self) -> None:
        """Release the worker's resources; the slow part (threads, rmtree) in the background.

        Called by the session once the worker has ended (or was killed).
        """
        if self._cleaned:
            return
        self._cleaned = True
        stop = getattr(self, "_attach_stop", None)
        if stop is not None:
            stop.set()
        self._close_proc_fds()
        try:
            self.sock.close()
        except OSError:
            pass
        if self.poll() is not None:
            self.zygote.forget(self.root_pid)
        JANITOR.submit(self._release)

    def _release(self) -> None:
        """Janitor thread: stop the supervisor, remove the working directory, then the cgroup
        (killing any straggler first)."""
        thread = getattr(self, "_attach_thread", None)
        if thread is not None:
            thread.join()
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.workdir:
            remove_scratch(self.workdir)
        if self.cgroup is not None:
            try:
                self.cgroup.remove()
            except SandboxError:
                pass

    def exit_info(self) -> ExitInfo:
        """How the worker ended; ``reason="oom"`` when the cgroup's OOM killer struck."""
        rc = self.poll()
        reason = None
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                if self.cgroup.oom_killed():
                    reason = "oom"
        return ExitInfo(rc, reason)

    def sample(self) -> ResourceSample:
        """Trusted figures: the cgroup's when there is one, else the worker process's from /proc
        (cheap: kept-open fds, used per call)."""
        return self._reading(per_call=False)

    def call_sample(self) -> ResourceSample:
        """The per-call reading: the cgroup's without the figures no call uses (two reads fewer)."""
        return self._reading(per_call=True)

    def _reading(self, *, per_call: bool) -> ResourceSample:
        reading = self.cgroup.sample(per_call=per_call) if self.cgroup is not None else None
        if reading is not None:
            return ResourceSample(**reading)
        return proc_sample(self._proc)

    def reset_peak(self) -> None:
        """A new peak window: the cgroup's, else one write on the kept-open ``clear_refs``."""
        if self.cgroup is not None:
            self.cgroup.reset_peak()
        elif self._proc is not None:
            self._proc.reset_peak()
        else:
            procfs.clear_refs(self.pid)


class NamespaceWorker(ZygoteWorker):
    """A namespaced worker, host view: the zygote worker plus cgroup, proxy and supervisor.

    ``root_pid`` is the outermost process, in the host pid namespace (the init the
    template cloned into the namespaces, or the process that unshared them; the
    template wrote its id maps); ``pid`` becomes the worker's host pid once the hello named it.
    Created by :meth:`ZygoteBackend.start_fresh` for a profile with namespaces.
    """

    _SETUP_CHILDREN = True

    def __init__(
        self,
        *,
        zygote: ZygoteClient,
        root_pid: int,
        sock: socket.socket,
        cgroup: Any,
        proxy: Any,
        proxy_dir: str | None,
        plan_report: dict[str, Any],
    ) -> None:
        super().__init__(zygote=zygote, root_pid=root_pid, sock=sock, workdir=None, cgroup=cgroup)
        self.proxy = proxy
        self.proxy_dir = proxy_dir
        self.plan_report = plan_report
        if proxy is not None:
            proxy.on_violation = self._violation
        self._chain: list[tuple[int, int]] = []

    def remember_chain(self, pids: list[int]) -> None:
        """HOST side: the set-up processes below the root (the init, under an unsharing root) as (pid, start time).

        Also opens a pidfd for each (where the kernel has them), so
        :meth:`wait_chain_gone` wakes the moment they exit instead of polling.
        """
        self._chain = [(p, t) for p in pids if (t := start_time(p)) is not None]
        self._pidfds = []
        for p, t in self._chain:
            try:
                fd = os.pidfd_open(p)
            except (OSError, AttributeError):
                continue
            if start_time(p) == t:  # still the same process: the fd names it
                self._pidfds.append(fd)
            else:
                os.close(fd)

    def _tree_pidfds(self) -> list[int]:
        """The tree's pidfds plus the set-up chain's (the init outlives its parent by a moment, and
        with it the whole pid namespace: the init ends only once every process in it has)."""
        return super()._tree_pidfds() + [os.dup(fd) for fd in getattr(self, "_pidfds", [])]

    def _close_pidfds(self) -> None:
        fds, self._pidfds = getattr(self, "_pidfds", []), []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def wait_chain_gone(self, timeout: float = 2.0) -> bool:
        """HOST side: wait until the set-up chain (the init) is gone; once the init is, the kernel
        has ended every other process of the pid namespace. SIGKILLs laggards."""
        deadline = time.monotonic() + timeout
        killed = False
        poller = select.poll()
        for fd in getattr(self, "_pidfds", []):
            poller.register(fd, select.POLLIN)
        while True:
            alive = [(p, t) for p, t in self._chain if start_time(p) == t]
            if not alive:
                return True
            if time.monotonic() > deadline:
                return False
            if not killed and self.poll() is not None:
                for p, _ in alive:
                    with contextlib.suppress(OSError):
                        os.kill(p, signal.SIGKILL)
                killed = True
            # A pidfd turns readable when its process exits; else poll /proc every 2 ms.
            poller.poll(2)

    def worker_tree(self) -> list[int]:
        """Host pids of the worker and everything it started (not the set-up processes)."""
        if self.pid == self.root_pid:
            return []
        return [self.pid, *descendants(self.pid)]

    def _reading(self, *, per_call: bool) -> ResourceSample:
        """Trusted figures: the cgroup's when there is one, else /proc over the worker tree."""
        net = self.proxy.stats() if self.proxy is not None else None
        reading = self.cgroup.sample(per_call=per_call) if self.cgroup is not None else None
        if reading is not None:
            s = ResourceSample(**reading)
        else:
            cpu, rss, seen = procfs.tree_cpu_rss(self.worker_tree())
            base = super()._reading(per_call=per_call)
            s = ResourceSample(
                cpu_time=cpu if seen else None,
                memory_current=rss if seen else None,
                memory_peak=base.memory_peak,
                pids=seen or None,
                source="procfs-tree",
            )
        if net is not None:
            s.network_bytes_sent = net["bytes_sent"]
            s.network_bytes_received = net["bytes_received"]
        return s

    def cleanup(self) -> None:
        """Make sure no set-up process is left, then release the rest in the background.

        Synchronous: the root process ended (the zygote reported it), and the init is
        gone (once the init is, the kernel has ended every process of the pid
        namespace), else they are killed. In the background (the janitor):
        supervisor and proxy threads, the proxy's directory, the cgroup.
        Idempotent.
        """
        if self._cleaned:
            return
        stop = getattr(self, "_attach_stop", None)
        if stop is not None:
            stop.set()  # before waiting for the chain: the attach thread stops moving it
        if self.poll() is not None and not self.wait_chain_gone():
            for p, t in self._chain:
                if start_time(p) == t:
                    with contextlib.suppress(OSError):
                        os.kill(p, signal.SIGKILL)
            self.wait_chain_gone()
        self._close_pidfds()
        super().cleanup()

    def _release(self) -> None:
        """Janitor thread: supervisor, proxy, proxy directory, then the cgroup (see the base)."""
        if self.proxy is not None:
            self.proxy.stop()
        if self.proxy_dir is not None:
            shutil.rmtree(self.proxy_dir, ignore_errors=True)
        super()._release()

    def describe(self) -> dict[str, Any]:
        """Which controls are in force and what fell back (for the audit record)."""
        out: dict[str, Any] = {k: v for k, v in self.plan_report.items() if k != "backend"}
        out["cgroups"] = (
            f"cgroup v{self.cgroup.version}" if self.cgroup is not None else out.get("cgroups", "rlimits only")
        )
        if self.cgroup is not None:
            out["cgroup_name"] = f"glsandbox-{self.cgroup.name}"
        if self.session_id is not None:
            out["session_id"] = self.session_id
        out["supervisor"] = "running" if self.supervisor is not None else out.get("escape_detection", "none")
        out["network_proxy"] = (
            f"{self.proxy.mode}: {', '.join(self.proxy.allowed_hosts) or 'any host'}" if self.proxy else "none"
        )
        return out
