"""GVISOR backend: the container backend with gVisor's ``runsc`` runtime (host side).

Same settings builder as CONTAINER (:func:`~.container.settings.container_settings`
with ``runtime="runsc"``), so the worker meets gVisor's user-space kernel
(the sentry) instead of the host's. The few differences a user-space kernel
needs live in that builder (see :data:`~.container.settings.RUNSC`).

Needs runsc registered with the Docker daemon with the runtime arguments
``--host-uds=open`` (the worker reaches its host transport socket through
gVisor's gofer) and ``--oci-seccomp`` (the sentry enforces our seccomp
profile), plus ``--network=none`` for runsc releases that refuse Docker's
network-none containers otherwise, and a platform that works on the host
(ptrace everywhere; kvm only with working (nested) virtualisation).
``scripts/dockerd-up`` registers it so.
Who calls: the session, through the registry.
"""

from __future__ import annotations

from typing import ClassVar

from ..config import IsolationType
from .container import docker_api
from .container.backend import ContainerBackend
from .container.settings import RUNSC

#: The runtimeArgs scripts/dockerd-up registers (platform: ptrace or systrap).
RUNSC_RUNTIME_ARGS = ("--host-uds=open", "--network=none", "--oci-seccomp", "--platform=ptrace")


class GVisorBackend(ContainerBackend):
    """:class:`ContainerBackend` with ``runtime="runsc"``; everything else is shared."""

    name: ClassVar[str] = "gvisor"
    isolation_type: ClassVar[IsolationType] = IsolationType.GVISOR
    strength: ClassVar[int] = 50
    runtime: ClassVar[str | None] = RUNSC

    @classmethod
    def runsc_hint(cls) -> str:
        """How to install runsc and register it with the arguments we need."""
        args = ", ".join(f'"{a}"' for a in RUNSC_RUNTIME_ARGS)
        return (
            "install gVisor's runsc (https://gvisor.dev/docs/user_guide/install/; Debian: "
            "apt-get install runsc) and register it with Docker: /etc/docker/daemon.json "
            f'{{"runtimes": {{"runsc": {{"path": "/usr/bin/runsc", "runtimeArgs": [{args}]}}}}}}, '
            "then restart dockerd or send it SIGHUP (scripts/dockerd-up does this when runsc is on PATH)"
        )

    @classmethod
    def detection_gap(cls) -> str:
        """gVisor's sentry has no seccomp user notifications, and no host fd crosses its gofer."""
        return (
            "untrusted only: gVisor has no seccomp user notifications, so violation records come from "
            "the sandbox's own reports (trusted: false); escape syscalls and STRICT's execve are denied "
            "inside by the sentry (OCI profile and the bootstrap's filter)"
        )

    @classmethod
    def unavailable_hint(cls) -> str:
        """The runsc hint while runsc is the problem, else CONTAINER's (daemon, image)."""
        info, _why = docker_api.daemon_info()
        if info is None:
            return f"{super().unavailable_hint()}; for gVisor also {cls.runsc_hint()}"
        entry = (info.get("Runtimes") or {}).get(RUNSC)
        if entry is None or docker_api.missing_runtime_args(RUNSC, entry):
            return cls.runsc_hint()
        return super().unavailable_hint()


__all__ = ["RUNSC", "RUNSC_RUNTIME_ARGS", "GVisorBackend"]
