"""The base of every backend whose worker is forked from the zygote (HOST side).

:class:`ZygoteBackend` starts, pools and connects workers forked from the
pre-imported template (:mod:`glsandbox_kernel.zygote`). What it sets up
around a worker follows only the subclass's typed
:class:`~glsandbox_kernel.confinement.profile.ConfinementProfile`: a private
host working directory or one inside the sandbox, a cgroup, the network
proxy, the namespace chain. BASIC, NAMESPACE and CHROOT subclass it
directly and differ only in their profile and availability checks.

Also here: :data:`POOLS` (warm pools of pre-confined workers,
``GLSANDBOX_WARM_POOL``), :func:`key_of` (a pool key).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import os
import shutil
import socket
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from .. import hosttemp, procfs
from .. import zygote as _zygote
from ..config import OSSandboxConfig
from ..confinement.cgroups import CgroupSection
from ..confinement.process import scrubbed_env
from ..confinement.profile import ConfinementProfile
from ..exceptions import BackendUnavailableError
from ..protocol import frame_cap
from ..zygote import ZygoteClient, get_zygote
from .base import SandboxBackend, WorkerProcess
from .pool import ZYGOTE_POLICY, PoolGroup
from .scratch import make_scratch, remove_scratch
from .zygote_worker import JANITOR, NamespaceWorker, ZygoteWorker, flush_cleanups

if TYPE_CHECKING:
    from ..project import ProjectLayout

__all__ = [
    "JANITOR",
    "POOLS",
    "NamespaceWorker",
    "ZygoteBackend",
    "ZygoteWorker",
    "flush_cleanups",
    "key_of",
    "scrubbed_env",
]

#: Warm pools of fully confined zygote workers, one per config key.
POOLS: PoolGroup[WorkerProcess] = PoolGroup(ZYGOTE_POLICY)


def _on_zygote_death(_client: ZygoteClient) -> None:
    # Runs on the dead client's reader thread: drain elsewhere (kill() waits on that client).
    threading.Thread(target=POOLS.drain_all, name="glsandbox-warm-drain", daemon=True).start()


_zygote.on_zygote_death(_on_zygote_death)
atexit.register(POOLS.drain_all)


def key_of(backend: str, plan: dict[str, Any], config: OSSandboxConfig) -> str:
    """A warm-pool key: a digest of the placeholder plan, the config and the interpreter."""
    blob = json.dumps(
        {"backend": backend, "python": sys.executable, "euid": os.geteuid(), "plan": plan, "config": config.to_dict()},
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class ZygoteBackend(SandboxBackend):
    """A worker forked from the zygote and confined by the steps its :attr:`profile` asks for.

    Subclasses set ``name``, ``isolation_type``, ``strength``, ``profile``
    and ``available()``. :meth:`check_config` refuses a config the profile
    cannot enforce (BackendUnavailableError saying what and how to fix it).
    """

    profile: ClassVar[ConfinementProfile]

    # -- what the profile can enforce -------------------------------------------------
    def check_config(self) -> None:
        """HOST side, before any start: refuse what this profile cannot enforce.

        A profile without a network namespace (``network="deny_only"``) can
        deny every network socket (seccomp, Landlock) but cannot route traffic
        through the proxy, so an allowlist or "any" is refused. A profile with
        a given root needs ``FilesystemConfig.root``, an existing directory.
        """
        net = self.config.network
        if self.profile.network == "deny_only" and net.mode != "none":
            what = f"allowlist {', '.join(net.allowed_hosts)}" if net.allowed_hosts else "any host"
            raise BackendUnavailableError(
                self.name,
                f"cannot enforce the network policy allow_network=True ({what}): without a network "
                "namespace its traffic cannot be routed through the filtering proxy",
                "use isolation_type='namespace' (or 'container'), or allow_network=False",
            )
        if self.config.limits.cpu_percent_limit is not None:
            why = "" if self.profile.cgroup else "this backend makes no cgroup"
            if not why:
                from ..confinement import cgroups

                why = cgroups.cpu_quota_unavailable()  # no cgroups, or no cpu controller in them
            if why:  # no rlimit counterpart: only a cgroup's CPU quota holds a share of the CPU
                raise BackendUnavailableError(
                    self.name,
                    f"cannot enforce cpu_percent_limit={self.config.limits.cpu_percent_limit:g}: {why}",
                    "use isolation_type='namespace' with a cgroup (root or delegated) or 'container', "
                    "or leave cpu_percent_limit unset",
                )
        if self.profile.root == "given":
            root = self.config.filesystem.root
            if not root:
                raise BackendUnavailableError(
                    self.name,
                    "FilesystemConfig.root is not set",
                    "set filesystem=FilesystemConfig(root=...) to a root filesystem directory "
                    "(e.g. made with debootstrap)",
                )
            if not os.path.isdir(root):
                raise BackendUnavailableError(self.name, f"root filesystem {root!r} is not a directory")

    # -- the plan -----------------------------------------------------------------------
    def child_plan(
        self,
        workdir: str,
        *,
        cgroup: CgroupSection | None = None,
        proxy_socket: str | None = None,
        layout: ProjectLayout | None = None,
    ) -> Any:
        """HOST side: the :class:`~glsandbox_kernel.confinement.ChildPlan` for one worker
        (``layout``: the project folder as scanned for this start, else scanned now)."""
        from ..confinement import build_child_plan

        return build_child_plan(
            self.config, profile=self.profile, workdir=workdir, cgroup=cgroup, proxy_socket=proxy_socket, layout=layout
        )

    def pool_key(self, layout: ProjectLayout | None = None) -> str:
        """What a warm-pool worker must share with this config to be handed out (HOST side).

        The child plan built with placeholders for the per-worker parts
        (working directory, cgroup name, proxy socket), plus the whole config
        (limits, network, supervisor policy) and the interpreter.
        """
        cg = None
        if self.profile.cgroup:
            from ..confinement import cgroups

            ok, why = cgroups.available()
            cg = CgroupSection(enabled=ok, name="<cgroup>", attach_by="host", unavailable="" if ok else why)
        proxy = "<proxy>" if self.profile.network == "proxy" and self.config.network.mode != "none" else None
        plan = self.child_plan(self.profile.workdir or "<workdir>", cgroup=cg, proxy_socket=proxy, layout=layout)
        return key_of(self.name, plan.to_wire(), self.config)

    # -- starting -------------------------------------------------------------------------
    def start(self, *, session_id: str) -> WorkerProcess:
        """A fully confined worker: from the warm pool when one is ready, else started now.

        A pooled worker has said hello already (``worker.hello``); the pool is
        topped up in the background either way. Called by the session.

        The project folder is scanned once here: the pool's key, a worker started
        now and the pool's refills share that layout. A pool's workers are built
        from the layout its key was computed from (its launcher holds it), so a
        worker handed out always has the masks of the folder as scanned now.
        """
        self.check_config()
        if POOLS.size() <= 0:
            worker = self.start_fresh(session_id=session_id)
        else:
            from ..project import project_layout

            layout = project_layout(self.config, create_output=True)
            pool = POOLS.get(self.pool_key(layout), functools.partial(self._launch_pooled, layout))
            taken = pool.take()
            pool.refill()
            worker = taken if taken is not None else self.start_fresh(session_id=session_id, layout=layout)
        if isinstance(worker, ZygoteWorker):
            worker.assign_session(session_id)
        return worker

    def _launch_pooled(self, layout: ProjectLayout | None = None) -> WorkerProcess:
        """Warm-pool filler thread: start a worker (from the pool key's ``layout``) and read its hello."""
        from ..session import HELLO_TIMEOUT

        worker = self.start_fresh(session_id="warmpool", layout=layout)
        try:
            self.connect(
                worker,
                max_frame=frame_cap(self.config.max_frame_bytes, self.config.limits.memory_limit_bytes),
                timeout=HELLO_TIMEOUT,
            )
        except BaseException:
            worker.kill()
            worker.cleanup()
            raise
        return worker

    def _make_cgroup(self, session_id: str) -> tuple[Any, CgroupSection | None]:
        """HOST side: the sandbox's cgroup (profile ``cgroup``), or the reason there is none."""
        if not self.profile.cgroup:
            return None, None
        from ..confinement import ConfinementError, cgroups

        ok, why = cgroups.available()
        if not ok:
            return None, CgroupSection(enabled=False, unavailable=f"{why}: rlimits only")
        try:
            mgr = cgroups.create_cgroup(
                self.config.limits,
                name=f"{session_id[:12]}-{uuid.uuid4().hex[:6]}",
                extra_processes=self.profile.helper_processes,
            )
        except ConfinementError as exc:
            if self.config.limits.cpu_percent_limit is not None:  # no rlimit holds it: refused, never skipped
                raise BackendUnavailableError(
                    self.name, f"cannot enforce cpu_percent_limit={self.config.limits.cpu_percent_limit:g}: {exc}"
                ) from exc
            return None, CgroupSection(enabled=False, unavailable=f"{exc}: rlimits only")
        return mgr, mgr.child_section(attach_by="host")

    def _make_proxy(self) -> tuple[Any, str | None]:
        """HOST side: the network proxy in a private directory, when the profile routes through
        it and the config allows any network."""
        net = self.config.network
        if self.profile.network != "proxy" or net.mode == "none":
            return None, None
        from ..confinement.network import NetworkProxy

        proxy_dir = hosttemp.private_dir("net")
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

    def start_fresh(self, *, session_id: str, layout: ProjectLayout | None = None) -> WorkerProcess:
        """Fork a new confined worker for ``session_id`` (not yet connected); undo all on failure.

        The profile decides what is made around it: a private host working
        directory (no root of its own) or the one inside the sandbox, a
        cgroup, the network proxy.
        """
        with contextlib.ExitStack() as undo:
            host_workdir, sized = None, False
            if self.profile.workdir is None:  # no root of its own: a private host folder, sized where it can be
                host_workdir, sized = make_scratch(session_id, self.config.limits.disk_quota_bytes)
                undo.callback(remove_scratch, host_workdir)
            workdir = self.profile.workdir or str(host_workdir)
            cgroup, cg_section = self._make_cgroup(session_id)
            if cgroup is not None:
                undo.callback(cgroup.remove)
            proxy, proxy_dir = self._make_proxy()
            if proxy is not None and proxy_dir is not None:
                undo.callback(shutil.rmtree, proxy_dir, True)
                undo.callback(proxy.stop)
            plan = self.child_plan(
                workdir, cgroup=cg_section, proxy_socket=proxy.socket_path if proxy else None, layout=layout
            )
            if host_workdir is not None and self.config.limits.disk_quota_bytes is not None:
                plan.report["disk_quota"] = (
                    "the working folder is a tmpfs of the quota"
                    if sized
                    else "the working folder (unsized here) is counted with the host folders by the disk guard"
                )
            host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            undo.callback(host_end.close)
            try:
                zygote = get_zygote(sys.executable)
                root = zygote.spawn(plan.to_wire(), child_end)
            finally:
                child_end.close()
            worker: ZygoteWorker
            if self.profile.namespaced:
                worker = NamespaceWorker(
                    zygote=zygote,
                    root_pid=root,
                    sock=host_end,
                    cgroup=cgroup,
                    proxy=proxy,
                    proxy_dir=proxy_dir,
                    plan_report=dict(plan.report),
                )
            else:
                worker = ZygoteWorker(zygote=zygote, root_pid=root, sock=host_end, workdir=host_workdir, cgroup=cgroup)
            if cgroup is not None:
                worker.start_early_attach()
            undo.pop_all()
        return worker

    # -- after the hello ------------------------------------------------------------------
    def on_hello(self, worker: WorkerProcess, hello: dict[str, Any], fds: list[int]) -> None:
        """Called by the session (or a warm pool) with the worker's first frame and its fds.

        The only fd a zygote worker passes is its seccomp listener: the
        supervisor takes it. ``hello`` is untrusted: its pid only selects
        among the host's own view of the tree below ``root_pid`` (inside a pid
        namespace through each process's ``NSpid`` chain).
        """
        if not isinstance(worker, ZygoteWorker):
            super().on_hello(worker, hello, fds)
            return
        if fds:
            worker.attach_supervisor(fds.pop(0), self.config)
        for fd in fds:
            os.close(fd)
        pid = hello.get("pid")
        tree = procfs.descendants(worker.root_pid)
        if not isinstance(worker, NamespaceWorker):
            if type(pid) is int and (pid == worker.root_pid or pid in tree):
                worker.set_worker_pid(pid)
            else:
                kids = procfs.children_of(worker.root_pid)
                if kids:
                    worker.set_worker_pid(kids[0])
            if worker.cgroup is not None:
                worker.finish_attach()
            return
        for host_pid in tree:
            chain = procfs.ns_pids(host_pid)
            if len(chain) >= 2 and type(pid) is int and chain[-1] == pid:
                worker.set_worker_pid(host_pid)
                break
        else:
            raise BackendUnavailableError(self.name, "the worker's pid was not found below the sandbox's root process")
        # The root is the init (pid 1 of the namespace, cloned by the template), or P1 (it
        # unshared) with the init below it: the set-up process left to see gone at cleanup.
        root_chain = procfs.ns_pids(worker.root_pid)
        worker.remember_chain([] if root_chain[-1:] == [1] else procfs.children_of(worker.root_pid)[:1])
        if worker.cgroup is not None:
            worker.finish_attach()

    def add_violation_listener(self, worker: WorkerProcess, listener: Any) -> None:
        if isinstance(worker, ZygoteWorker):
            worker.add_violation_listener(listener)
