"""Step: network. Loopback in the sandbox's namespace; a host-side proxy for allowlists.

Child side (inside the new network namespace, which has no route out):

- :func:`loopback_up_child` brings ``lo`` up (``SIOCSIFFLAGS``);
- :func:`prepare_relay_child` binds the in-sandbox relay's TCP socket on
  127.0.0.1 and sets ``HTTP_PROXY``/``HTTPS_PROXY`` for the worker;
- :func:`start_relay_child` forks the relay (after the worker's last
  confinement step, so it is confined the same way): it copies bytes between
  TCP clients on 127.0.0.1 and the host proxy's Unix socket, which the
  mounts step bound into the sandbox. It decides nothing: it is untrusted.

Host side (:mod:`.proxy`): :class:`NetworkProxy` serves HTTP ``CONNECT``, absolute-form HTTP
requests (what ``urllib`` sends for ``http://`` through a proxy) and a plain
``FORWARD host:port`` line protocol on that Unix socket. It decides *before*
connecting: link-local addresses (169.254.0.0/16, fe80::/10), cloud metadata
names and addresses are always blocked, loopback only when an allowlist
entry names it literally; names are resolved once on the host and the
checked address is the one connected to. It counts bytes both ways (the
trusted ``network_bytes_sent/received``) and applies a token-bucket
bandwidth limit. Every refusal becomes a violation record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import selectors
import signal
import socket
import struct

from ._common import ChildState, ConfinementError, PlanContext, close_fds_except, lower_file_limit
from .proxy import BLOCKED_NETWORKS, LOOPBACK_NETWORKS, METADATA_NAMES, NetworkProxy

log = logging.getLogger(__name__)

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_RUNNING = 0x40

# ---------------------------------------------------------------------------
# HOST side: plan


@dataclasses.dataclass(frozen=True, kw_only=True)
class NetworkSection:
    """The network section: the sandbox's own (empty) network namespace, and the proxy's
    in-sandbox socket path when the config allows any network."""

    enabled: bool = True
    mode: str = "none"
    loopback: bool = True
    proxy_socket: str | None = None


def plan_network(*, mode: str, proxy_socket: str | None) -> NetworkSection:
    """HOST side: the network section of a child plan.

    ``mode`` is ``NetworkConfig.mode`` ("none", "allowlist", "any");
    ``proxy_socket`` is the in-sandbox path of the proxy's Unix socket (None
    without a proxy).
    """
    return NetworkSection(mode=mode, proxy_socket=proxy_socket if mode != "none" else None)


def plan_step(ctx: PlanContext) -> NetworkSection | None:
    """HOST side: only for a profile that routes traffic through the proxy (a network namespace).

    Without a proxy socket the sandbox gets loopback only (reported).
    """
    if ctx.profile.network != "proxy":
        return None
    from .mounts import PROXY_SOCKET_PATH

    mode = ctx.config.network.mode
    use_proxy = mode != "none" and ctx.proxy_socket is not None
    if mode != "none" and ctx.proxy_socket is None:
        ctx.report["network"] = "network allowed but no proxy given: loopback only"
    return plan_network(mode=mode if use_proxy else "none", proxy_socket=PROXY_SOCKET_PATH if use_proxy else None)


# ---------------------------------------------------------------------------
# CHILD side


def prepare_child(section: NetworkSection | None, state: ChildState) -> None:
    """CHILD side, first half: loopback up, then the relay's listening socket (``state.relay``)."""
    loopback_up_child(section, state)
    state.relay = prepare_relay_child(section, state)


def loopback_up_child(section: NetworkSection | None, state: ChildState) -> None:
    """CHILD side: ``ip link set lo up`` with two ioctls (needs CAP_NET_ADMIN in the netns)."""
    if not section or not section.enabled or not section.loopback:
        return
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = bytearray(struct.pack("16sH22x", b"lo", 0))
        fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifr, True)
        flags = struct.unpack_from("H", ifr, 16)[0]
        struct.pack_into("H", ifr, 16, flags | IFF_UP | IFF_RUNNING)
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, ifr, True)
    except OSError as exc:
        raise ConfinementError("network", "ioctl(SIOCSIFFLAGS, lo up)", exc.errno) from exc
    finally:
        s.close()
    state.report["network"] = {"mode": section.mode, "loopback": "up"}


def prepare_relay_child(section: NetworkSection | None, state: ChildState) -> socket.socket | None:
    """CHILD side: bind the relay's listening socket and point the proxy variables at it."""
    if not section or not section.enabled or not section.proxy_socket:
        return None
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    port = lsock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ[name] = url
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(name, None)
    os.environ["GLSANDBOX_PROXY"] = f"127.0.0.1:{port}"
    state.report.setdefault("network", {})["proxy"] = url
    return lsock


def start_relay_child(section: NetworkSection | None, state: ChildState) -> None:
    """CHILD side, second half: double-fork the relay (it is reparented to the sandbox's init).

    The worker closes its copy of the listening socket; the relay closes
    every other fd it inherited, the seccomp listener included.
    """
    lsock, state.relay = state.relay, None
    if lsock is None or not section or not section.proxy_socket:
        return
    unix_path = section.proxy_socket
    pid = os.fork()
    if pid == 0:
        try:
            if os.fork() == 0:
                lower_file_limit(state.file_limit)  # the worker's own (it lowers it after its hello)
                _relay_main_child(lsock, unix_path)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    lsock.close()


def _relay_main_child(lsock: socket.socket, unix_path: str) -> None:
    """CHILD side, relay process: copy bytes between TCP clients and the Unix socket.

    No PR_SET_PDEATHSIG: its parent exits at once; it ends with the pid
    namespace when the init exits.
    """
    close_fds_except({lsock.fileno()})
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    peers: dict[socket.socket, socket.socket] = {}
    eof: set[socket.socket] = set()

    def close_pair(s: socket.socket) -> None:
        other = peers.pop(s, None)
        for x in (s, other):
            if x is None:
                continue
            peers.pop(x, None)
            eof.discard(x)
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(x)
            x.close()

    while True:
        for key, _ in sel.select():
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if s is lsock:
                try:
                    client, _ = lsock.accept()
                except OSError:
                    continue
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    upstream.connect(unix_path)
                except OSError:
                    client.close()
                    upstream.close()
                    continue
                peers[client] = upstream
                peers[upstream] = client
                sel.register(client, selectors.EVENT_READ, None)
                sel.register(upstream, selectors.EVENT_READ, None)
                continue
            other = peers.get(s)
            try:
                data = s.recv(65536)
            except OSError:
                close_pair(s)
                continue
            if other is None:
                close_pair(s)
            elif data:
                try:
                    other.sendall(data)
                except OSError:
                    close_pair(s)
            else:  # half-close: pass the EOF on, finish when both sides ended
                sel.unregister(s)
                eof.add(s)
                with contextlib.suppress(OSError):
                    other.shutdown(socket.SHUT_WR)
                if other in eof:
                    close_pair(s)


__all__ = [
    "BLOCKED_NETWORKS",
    "LOOPBACK_NETWORKS",
    "METADATA_NAMES",
    "NetworkProxy",
    "NetworkSection",
    "loopback_up_child",
    "plan_network",
    "plan_step",
    "prepare_child",
    "prepare_relay_child",
    "start_relay_child",
]
