"""GVISOR backend: the container backend with gVisor's ``runsc`` runtime (host side).

Same settings as CONTAINER (:func:`~.container.container_settings` with
``runtime="runsc"``), so the worker meets gVisor's user-space kernel instead
of the host's. Needs runsc registered with the Docker daemon, with host Unix
sockets allowed (``--host-uds=open``) for the transport socket.
Who calls: the session, through the registry.
"""

from __future__ import annotations

from typing import ClassVar

from ..config import IsolationType
from .container import ContainerBackend

RUNSC = "runsc"


class GVisorBackend(ContainerBackend):
    """:class:`ContainerBackend` with ``runtime="runsc"``; everything else is shared."""

    name: ClassVar[str] = "gvisor"
    isolation_type: ClassVar[IsolationType] = IsolationType.GVISOR
    strength: ClassVar[int] = 50
    runtime: ClassVar[str | None] = RUNSC

    @classmethod
    def unavailable_hint(cls) -> str:
        return (
            "install gVisor's runsc (https://gvisor.dev/docs/user_guide/install/, e.g. from its apt "
            "repository: apt-get install runsc) and register it with Docker with host Unix sockets "
            'allowed: /etc/docker/daemon.json {"runtimes": {"runsc": {"path": "/usr/bin/runsc", '
            '"runtimeArgs": ["--host-uds=open"]}}}, then restart dockerd (scripts/dockerd-up does '
            "this when runsc is on PATH)"
        )


__all__ = ["RUNSC", "GVisorBackend"]
