"""CONTAINER backend: the worker in a locked-down Docker container (host side).

Created by the session through the registry; :meth:`ContainerBackend.start`
is its only worker-making call (a warm one from the pool when
``GLSANDBOX_CONTAINER_POOL`` > 0). :meth:`ContainerBackend.on_hello` takes
the seccomp listener the sandbox-side bootstrap sent with the hello and
starts the supervisor on it, after checking from host facts that it is one.
GVISOR (:mod:`glsandbox_kernel.backends.gvisor`) subclasses it with
``runtime="runsc"``.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, ClassVar

from ... import procfs
from ...config import IsolationType
from ...exceptions import SandboxSecurityError
from ...protocol import frame_cap
from ..base import SandboxBackend, WorkerProcess
from . import docker_api, images
from .launch import launch_worker
from .settings import container_settings, settings_key
from .worker import ContainerWorker

if TYPE_CHECKING:
    from ...confinement.network import NetworkProxy


def is_seccomp_listener(fd: int) -> bool:
    """Whether ``fd`` (received from the sandbox) is a seccomp user-notification listener."""
    return procfs.fd_link(fd) == "anon_inode:seccomp notify"


class ContainerBackend(SandboxBackend):
    """Docker container per worker; warm pool when ``GLSANDBOX_CONTAINER_POOL`` > 0."""

    name: ClassVar[str] = "container"
    isolation_type: ClassVar[IsolationType] = IsolationType.CONTAINER
    strength: ClassVar[int] = 40
    needs_daemon: ClassVar[bool] = True
    runtime: ClassVar[str | None] = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = docker_api.check_available(backend=cls.name, runtime=cls.runtime)
        if ok:
            from .settings import supervised

            why += "; escape detection: " + (
                "seccomp supervisor (trusted)" if supervised(cls.runtime) else cls.detection_gap()
            )
        return ok, why

    @classmethod
    def detection_gap(cls) -> str:
        """What stands in for the supervisor where the kernel cannot notify (doctor, describe)."""
        return "none: the host kernel has no seccomp user notifications (escape syscalls denied, unseen)"

    @classmethod
    def unavailable_hint(cls) -> str:
        """What to do: the rootless-on-cgroup-v1 way out when that is the refusal, else install and build."""
        info, _why = docker_api.daemon_info()
        if info is not None and docker_api.rootless_on_cgroup_v1(info):
            return docker_api.ROOTLESS_V1_HINT
        return (
            "install and start Docker (scripts/install-system-deps; scripts/dockerd-up), "
            f"then build the image with `{images.BUILD_SCRIPT}`"
        )

    def settings(self, *, session_id: str, socket_dir: str, proxy_dir: str | None = None) -> dict[str, Any]:
        """:func:`~.settings.container_settings` for this backend's config and runtime."""
        return container_settings(
            self.config,
            session_id=session_id,
            socket_dir=socket_dir,
            runtime=self.runtime,
            backend=self.name,
            proxy_dir=proxy_dir,
        )

    def pool_key(self) -> str:
        """What a pooled container must share with this config to be handed out.

        Its settings, and what its supervisor (attached in the pool, at the
        hello) decides by: whether new programs are allowed, and which.
        """
        key = settings_key(self.settings(session_id="pool", socket_dir="<socket>", proxy_dir="<proxy>"))
        supervision = repr((self.config.new_programs_allowed, tuple(self.config.whitelist.allowed_executables)))
        return f"{key}-{hashlib.sha256(supervision.encode()).hexdigest()[:8]}"

    def _proxy(self, path: str) -> NetworkProxy:
        """HOST side: the network proxy for one container (the only way out of its network none)."""
        from ...confinement.network import NetworkProxy

        net = self.config.network
        return NetworkProxy(path, net.allowed_hosts, self.config.limits.network_bandwidth_bytes_per_s, mode=net.mode)

    def _launch(self, session_id: str) -> ContainerWorker:
        return launch_worker(
            lambda sock_dir, proxy_dir: self.settings(session_id=session_id, socket_dir=sock_dir, proxy_dir=proxy_dir),
            backend=self.name,
            proxy_for=self._proxy if self.config.network.mode != "none" else None,
        )

    def _launch_pooled(self) -> ContainerWorker:
        """Warm-pool filler thread: start a container and read its hello (supervisor attached); undo on failure."""
        from ...session import HELLO_TIMEOUT

        worker = self._launch("pool")
        try:
            cap = frame_cap(self.config.max_frame_bytes, self.config.limits.memory_limit_bytes)
            self.connect(worker, max_frame=cap, timeout=HELLO_TIMEOUT)
        except BaseException:
            worker.kill()
            worker.cleanup()
            raise
        return worker

    def start(self, *, session_id: str) -> WorkerProcess:
        """A started, connected container worker: a pooled one has said hello already."""
        from . import warm as docker_pool

        if docker_pool.pool_size() <= 0:
            return self._launch(session_id)
        docker_pool.note_take()
        pool = docker_pool.get_pool(self.pool_key(), self._launch_pooled)
        worker = pool.take()
        if worker is None:
            worker = self._launch(session_id)
        else:
            worker.pooled = True
            worker.session_id = session_id
        docker_pool.refill_after_take(pool)
        return worker

    def on_hello(self, worker: WorkerProcess, hello: dict[str, Any], fds: list[int]) -> None:
        """Called by the session with the hello and the fds it carried (untrusted).

        Where the settings asked the bootstrap for a notifying filter, exactly
        one fd must come, and it must be a seccomp listener, and the worker
        (its host pid from SO_PEERCRED) must run under more filters than the
        OCI profile alone: else the container is refused before any user
        code runs. Nothing of the hello's content is used.
        """
        try:
            if isinstance(worker, ContainerWorker) and worker.seccomp.get("notify"):
                if len(fds) != 1 or not is_seccomp_listener(fds[0]):
                    raise SandboxSecurityError(
                        "the container's worker did not hand over its seccomp listener "
                        f"({len(fds)} fd(s) came with the hello): refused"
                    )
                count = procfs.seccomp_filters(worker.pid)
                if count is not None and count < 2:
                    raise SandboxSecurityError(
                        f"the container's worker runs under {count} seccomp filter(s), not ours: refused"
                    )
                worker.attach_supervisor(fds.pop(0), self.config)
        finally:
            for fd in fds:
                os.close(fd)

    def add_violation_listener(self, worker: WorkerProcess, listener: Any) -> None:
        if isinstance(worker, ContainerWorker):
            worker.add_violation_listener(listener)
