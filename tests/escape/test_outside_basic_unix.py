"""Outside review: the BASIC backend lets sandboxed code connect to any host Unix socket.

Attack: BASIC's Landlock rules cover opening files, and its seccomp filter
denies IPv4/IPv6/packet sockets, but ``socket(AF_UNIX)`` + ``connect(path)``
is neither: a pathname Unix socket is reachable wherever it is on the host,
visible folder or not. As root (the sandbox keeps the host's uid 0) that is
``/var/run/docker.sock`` (root on the host: ``docker run -v /:/host``),
Podman's API socket, containerd, the D-Bus system bus (``systemd-run``);
rootless it is the user's ssh-agent, session bus, rootless Podman.
Measured here at STRICT and MODERATE: ``GET /_ping`` on /var/run/docker.sock
answered ``HTTP/1.0 200 OK`` from inside the sandbox.

Judged from the host: a Unix socket server this test starts in a folder the
sandbox was never shown must see no connection and no bytes, and the sandboxed connect
must fail. Host sockets of daemons, when present, are only connected to
(nothing is sent).

Fix (suggested): ``confinement/seccomp.py`` for BASIC (``deny_inet``
profiles): deny ``connect``/``sendto``/``sendmsg`` on AF_UNIX sockets with a
path (or ``socket(AF_UNIX)`` outright, keeping ``socketpair`` for the
worker), or Landlock ``LANDLOCK_ACCESS_FS_RESOLVE_UNIX`` where the kernel has
it; refuse BASIC as root otherwise (``backends/basic.py``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

from .test_outside_readonly_socket import project_with_a_service

__all__ = ["project_with_a_service"]  # the fixture, imported for pytest

cloudpickle.register_pickle_by_value(sys.modules[__name__])

OK, WHY = backends()["basic"].available()
pytestmark = pytest.mark.skipif(not OK, reason=f"basic: {WHY}")


def attack_connect_unix(paths: list[str]) -> dict[str, Any]:
    """SANDBOX side: connect to each pathname Unix socket; the errno, or 'connected'."""
    import socket as s

    out: dict[str, Any] = {}
    for path in paths:
        try:
            sock = s.socket(s.AF_UNIX, s.SOCK_STREAM)
        except OSError as exc:  # denied at creation: as good as a refused connect
            out[path] = exc.errno
            continue
        sock.settimeout(5)
        try:
            sock.connect(path)
            out[path] = "connected"
        except OSError as exc:
            out[path] = exc.errno
        finally:
            sock.close()
    return out


@pytest.mark.parametrize("level", ["strict", "moderate"])
def test_basic_cannot_connect_to_a_host_unix_socket(
    level: str, project_with_a_service: tuple[str, str, list[bytes]]
) -> None:
    _folder, path, accepted = project_with_a_service  # a host folder the BASIC sandbox is not shown
    daemons = [p for p in ("/var/run/docker.sock", "/run/dbus/system_bus_socket") if os.path.exists(p)]
    cfg = create_config_by_level(level, isolation_type=IsolationType.BASIC)
    with OSSandbox(cfg) as sb:
        result = sb.execute(attack_connect_unix, [path, *daemons])
    assert accepted == [], f"the host's private Unix socket accepted a sandbox connection: {result}"
    assert result[path] != "connected", result
    for daemon in daemons:
        assert result[daemon] != "connected", f"{level}: BASIC sandbox connected to {daemon}: {result}"
