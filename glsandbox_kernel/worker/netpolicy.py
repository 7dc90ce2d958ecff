"""Network errors that name the sandbox's policy (SANDBOX side).

Inside a sandbox there is no DNS and no route out: only loopback and, where
the policy allows any network, the host's HTTP(S) proxy. A blocked
connection would otherwise look like a DNS failure ("Name or service not
known") or a dead network. :func:`install_child` (called by the worker once,
after confinement) makes ``socket.getaddrinfo`` and ``socket.connect``
failures say that the sandbox policy blocked the host, which policy, and how
to allow it. Nothing is allowed by this: the kernel and the proxy decide.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

_HINT = "allow it with allowed_hosts=('HOST:PORT',) (kernel option allowed_hosts, --allow-host HOST:PORT)"


def policy_text() -> str:
    """The policy as the host described it in ``GLSANDBOX_NETWORK``."""
    return os.environ.get("GLSANDBOX_NETWORK") or "network: none"


def _blocked(host: Any, port: Any) -> str:
    where = f"{host}:{port}" if port not in (None, "", 0) else str(host)
    proxy = os.environ.get("HTTPS_PROXY")
    via = f"; web requests go through the sandbox's proxy {proxy}" if proxy else ""
    return f"glsandbox: connection to {where} blocked by the sandbox policy ({policy_text()}{via}); {_HINT}"


def install_child() -> None:
    """SANDBOX side: wrap ``getaddrinfo`` and ``socket.connect`` once (idempotent)."""
    if getattr(socket, "_glsandbox_policy", False):
        return
    socket._glsandbox_policy = True  # type: ignore[attr-defined]
    orig_getaddrinfo = socket.getaddrinfo
    orig_connect = socket.socket.connect

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return orig_getaddrinfo(host, port, *args, **kwargs)
        except socket.gaierror as exc:
            raise socket.gaierror(exc.errno, f"{exc.strerror}: {_blocked(host, port)}") from None

    def connect(self: socket.socket, address: Any) -> None:
        try:
            orig_connect(self, address)
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EPERM) and isinstance(
                address, tuple
            ):
                raise OSError(exc.errno, f"{exc.strerror}: {_blocked(address[0], address[1])}") from None
            raise

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
