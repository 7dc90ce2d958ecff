"""NAMESPACE backend: every Linux confinement step around a zygote-forked worker (host side).

The worker is forked from the pre-imported template (:mod:`glsandbox_kernel.zygote`),
so a fresh sandbox does not pay for a fresh interpreter. In the child,
:func:`glsandbox_kernel.confinement.apply_child_plan` puts it in new user,
pid, mount, net, ipc, uts and cgroup namespaces on a tmpfs root with
read-only binds of what Python needs, then rlimits, capabilities dropped,
no_new_privs, Landlock and seccomp.

Around it, on the host side, this backend adds what must be trusted:

- a cgroup (memory limit and peak, OOM detection, pids, cpu, io) made
  before the worker starts and removed after it ends, or rlimits only when
  cgroups cannot be used here (reported in ``describe()`` and the metrics);
- the seccomp supervisor, fed with the listener fd from the worker's hello;
- the network proxy, when the config allows any network: the only way out
  of the sandbox's empty network namespace.

Works as root (the sandbox uid maps to 65534) and as an unprivileged user
(it maps to the user's own uid). :class:`NamespaceWorker` is reused by the
CHROOT backend.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, ClassVar

from .. import procfs
from ..config import IsolationType
from ..exceptions import BackendUnavailableError, SandboxError
from ..procfs import children_of, descendants, ns_pids, start_time
from ..zygote import ZygoteClient, get_zygote
from .base import ExitInfo, ResourceSample, WorkerProcess
from .basic import BasicBackend
from .zygote_backend import ZygoteWorker, key_of

#: The worker's working directory inside the sandbox (on the private scratch tmpfs).
SANDBOX_WORKDIR = "/tmp/work"


class NamespaceWorker(ZygoteWorker):
    """A namespaced worker, host view: the zygote worker plus cgroup, proxy and supervisor.

    ``root_pid`` is the outermost process (P0, in the host pid namespace);
    ``pid`` becomes the worker's host pid once the hello named it.
    Created by :meth:`NamespaceBackend.start`.
    """

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
        super().__init__(zygote=zygote, root_pid=root_pid, sock=sock, workdir=None)
        self.cgroup = cgroup
        self.proxy = proxy
        self.proxy_dir = proxy_dir
        self.plan_report = plan_report
        if proxy is not None:
            proxy.on_violation = self._violation
        self._chain: list[tuple[int, int]] = []

    def assign_session(self, session_id: str) -> None:
        """HOST side, at a warm-pool handover: name the cgroup after the session.

        Renamed in place (cgroup v1 allows it; no migration, no RCU wait).
        Where the kernel refuses (cgroup v2), the name stays and ``describe()``
        still names the session next to it.
        """
        super().assign_session(session_id)
        if self.cgroup is not None and not self.cgroup.name.startswith(session_id[:12]):
            with contextlib.suppress(OSError):
                self.cgroup.rename(f"{session_id[:12]}-{uuid.uuid4().hex[:6]}")

    def remember_chain(self, pids: list[int]) -> None:
        """HOST side: the set-up processes (P1, the init) as (pid, start time), for cleanup.

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

    def _close_pidfds(self) -> None:
        fds, self._pidfds = getattr(self, "_pidfds", []), []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def wait_chain_gone(self, timeout: float = 2.0) -> bool:
        """HOST side: wait until P1 and the init are gone; once the init is, the kernel
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

    def start_early_attach(self) -> None:
        """HOST side: move the sandbox's processes into the cgroup while they set up.

        A cgroup migration first waits for an RCU grace period (about 15 ms
        on a small VM); migrations soon after need not. A thread moves the
        root process at once, then each new process of the tree whose parent
        had not been moved when it forked, so the wait overlaps with the
        sandbox's own set-up and :meth:`finish_attach` usually has nothing
        left to do.
        """
        self._attach_error: BaseException | None = None
        self._attach_stop = threading.Event()

        def run() -> None:
            try:
                self.cgroup.attach([self.root_pid])
                # Until the worker (the third process below the root) exists and
                # is inside, a process may fork before it was moved.
                while not self._attach_stop.wait(0.002) and self.poll() is None:
                    tree = descendants(self.root_pid)
                    self.cgroup.attach(tree)
                    if len(tree) >= 3:
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

    def worker_tree(self) -> list[int]:
        """Host pids of the worker and everything it started (not the set-up processes)."""
        if self.pid == self.root_pid:
            return []
        return [self.pid, *descendants(self.pid)]

    def sample(self) -> ResourceSample:
        """Trusted figures: the cgroup's when there is one, else /proc over the worker tree."""
        net = self.proxy.stats() if self.proxy is not None else None
        reading = self.cgroup.sample() if self.cgroup is not None else None
        if reading is not None:
            s = ResourceSample(**reading)
        else:
            cpu, rss, seen = 0.0, 0, 0
            for pid in self.worker_tree():
                st = procfs.cpu_rss(pid)
                if st is not None:
                    cpu, rss, seen = cpu + st[0], rss + st[1], seen + 1
            base = super().sample()
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

    def reset_peak(self) -> None:
        if self.cgroup is not None:
            self.cgroup.reset_peak()
        else:
            super().reset_peak()

    def exit_info(self) -> ExitInfo:
        """How the worker ended; ``reason="oom"`` when the cgroup's OOM killer struck."""
        rc = self.poll()
        reason = None
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                if self.cgroup.oom_killed():
                    reason = "oom"
        return ExitInfo(rc, reason)

    def kill(self) -> None:
        """Kill the tree (the init's death ends the pid namespace), then empty the cgroup."""
        super().kill()
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.kill_all()

    def cleanup(self) -> None:
        """Make sure no set-up process is left, then release the rest in the background.

        Synchronous: P0 ended (the zygote reported it), and P1 and the init are
        gone (once the init is, the kernel has ended every process of the pid
        namespace), else they are killed. In the background (the janitor):
        supervisor and proxy threads, the proxy's directory, the cgroup.
        Idempotent.
        """
        if self._cleaned:
            return
        stop = getattr(self, "_attach_stop", None)
        if stop is not None:
            stop.set()
        if self.poll() is not None and not self.wait_chain_gone():
            for p, t in self._chain:
                if start_time(p) == t:
                    with contextlib.suppress(OSError):
                        os.kill(p, signal.SIGKILL)
            self.wait_chain_gone()
        self._close_pidfds()
        super().cleanup()

    def _release(self) -> None:
        """Janitor thread: supervisor, proxy, proxy directory, cgroup (killing any straggler first)."""
        thread = getattr(self, "_attach_thread", None)
        if thread is not None:
            thread.join()
        super()._release()
        if self.proxy is not None:
            self.proxy.stop()
        if self.proxy_dir is not None:
            shutil.rmtree(self.proxy_dir, ignore_errors=True)
        if self.cgroup is not None:
            try:
                self.cgroup.remove()
            except SandboxError:
                pass

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


class NamespaceBackend(BasicBackend):
    """Linux namespaces, tmpfs root, cgroups, seccomp supervisor, Landlock, proxy."""

    name: ClassVar[str] = "namespace"
    isolation_type: ClassVar[IsolationType] = IsolationType.NAMESPACE
    strength: ClassVar[int] = 30

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Needs Linux and user namespaces (root or unprivileged); cgroups are optional."""
        if not sys.platform.startswith("linux"):
            return False, "needs Linux namespaces"
        from ..confinement import cgroups, landlock, namespaces, seccomp

        ok, why = namespaces.userns_available()
        if not ok:
            return False, f"cannot create user namespaces: {why}"
        parts = ["user/pid/mount/net/ipc/uts/cgroup namespaces, tmpfs root"]
        sc_ok, sc_why = seccomp.supported()
        parts.append(
            "seccomp" + (" + supervisor" if seccomp.notify_supported() else "") if sc_ok else f"no seccomp ({sc_why})"
        )
        abi = landlock.landlock_abi()
        parts.append(f"Landlock ABI {abi}" if abi else "no Landlock")
        cg_ok, cg_why = cgroups.available()
        parts.append(cg_why if cg_ok else f"no cgroups ({cg_why}): rlimits only")
        return True, "; ".join(parts)

    @classmethod
    def unavailable_hint(cls) -> str:
        return (
            "enable user namespaces (sysctl user.max_user_namespaces=15000; on Debian "
            "kernel.unprivileged_userns_clone=1; on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)"
        )

    def workdir_inside(self) -> str:
        """The worker's working directory inside the sandbox."""
        return SANDBOX_WORKDIR

    def child_plan(  # type: ignore[override]
        self, workdir: str, *, cgroup: dict[str, Any] | None = None, proxy_socket: str | None = None
    ) -> dict[str, Any]:
        """The child-side steps (see :mod:`glsandbox_kernel.confinement`) plus env, umask, cwd."""
        from ..confinement import build_child_plan

        plan = build_child_plan(
            self.config, backend=self.name, workdir=workdir, cgroup=cgroup, proxy_socket=proxy_socket
        )
        return self.add_process_fields(plan, workdir)

    def _make_cgroup(self, session_id: str) -> tuple[Any, dict[str, Any]]:
        """HOST side: the sandbox's cgroup, or the reason there is none."""
        from ..confinement import HELPER_PROCESSES, ConfinementError, cgroups

        ok, why = cgroups.available()
        if not ok:
            return None, {"enabled": False, "unavailable": f"{why}: rlimits only"}
        try:
            mgr = cgroups.create_cgroup(
                self.config.limits,
                name=f"{session_id[:12]}-{uuid.uuid4().hex[:6]}",
                extra_processes=HELPER_PROCESSES,
            )
        except ConfinementError as exc:
            return None, {"enabled": False, "unavailable": f"{exc}: rlimits only"}
        return mgr, mgr.child_section(attach_by="host")

    def _make_proxy(self) -> tuple[Any, str | None]:
        """HOST side: the network proxy in a private directory, when any network is allowed."""
        net = self.config.network
        if net.mode == "none":
            return None, None
        from ..confinement.network import NetworkProxy

        proxy_dir = tempfile.mkdtemp(prefix="glsandbox-net-")
        try:
            proxy = NetworkProxy(
                os.path.join(proxy_dir, "proxy.sock"),
                net.allowed_hosts,
                self.config.limits.network_bandwidth_bytes_per_s,
                mode=net.mode,
            )
        except OSError:
            shutil.rmtree(proxy_dir, ignore_errors=True)
            raise
        return proxy, proxy_dir

    def pool_key(self) -> str:
        """The warm-pool key: the plan with placeholders for cgroup name and proxy socket."""
        from ..confinement import cgroups

        ok, why = cgroups.available()
        cg = {"enabled": ok, "name": "<cgroup>", "attach_by": "host", "available": why}
        proxy = "<proxy>" if self.config.network.mode != "none" else None
        return key_of(self.name, self.child_plan(self.workdir_inside(), cgroup=cg, proxy_socket=proxy), self.config)

    def start_fresh(self, *, session_id: str) -> WorkerProcess:
        """Create cgroup and proxy, fork the confined worker; undo everything on failure."""
        workdir = self.workdir_inside()
        with contextlib.ExitStack() as undo:
            cgroup, cg_section = self._make_cgroup(session_id)
            if cgroup is not None:
                undo.callback(cgroup.remove)
            proxy, proxy_dir = self._make_proxy()
            if proxy is not None and proxy_dir is not None:
                undo.callback(shutil.rmtree, proxy_dir, True)
                undo.callback(proxy.stop)
            plan = self.child_plan(workdir, cgroup=cg_section, proxy_socket=proxy.socket_path if proxy else None)
            host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            undo.callback(host_end.close)
            try:
                zygote = get_zygote(sys.executable)
                root = zygote.spawn(plan, child_end)
            finally:
                child_end.close()
            worker = NamespaceWorker(
                zygote=zygote,
                root_pid=root,
                sock=host_end,
                cgroup=cgroup,
                proxy=proxy,
                proxy_dir=proxy_dir,
                plan_report=dict(plan.get("report", {})),
            )
            if cgroup is not None:
                worker.start_early_attach()
            undo.pop_all()
        return worker

    def on_hello(self, worker: WorkerProcess, hello: dict[str, Any], fds: list[int]) -> None:
        """Start the supervisor on the listener fd; find the worker's host pid.

        ``hello`` is untrusted: its pid (as seen inside the pid namespace) only
        selects among the host's own view of the tree below ``root_pid``.
        """
        if not isinstance(worker, ZygoteWorker):
            super().on_hello(worker, hello, fds)
            return
        if fds:
            worker.attach_supervisor(fds.pop(0), self.config)
        for fd in fds:
            os.close(fd)
        inner = hello.get("pid")
        tree = descendants(worker.root_pid)
        for pid in tree:
            chain = ns_pids(pid)
            if len(chain) >= 2 and type(inner) is int and chain[-1] == inner:
                worker.set_worker_pid(pid)
                break
        else:
            raise BackendUnavailableError(self.name, "the worker's pid was not found below the sandbox's root process")
        if isinstance(worker, NamespaceWorker):
            p1 = children_of(worker.root_pid)
            init = children_of(p1[0]) if p1 else []
            worker.remember_chain(p1[:1] + init[:1])
        if isinstance(worker, NamespaceWorker) and worker.cgroup is not None:
            worker.finish_attach()
