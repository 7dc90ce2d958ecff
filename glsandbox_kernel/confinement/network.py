"""Step: network. Loopback in the sandbox's namespace; a host-side proxy for allowlists.

Child side (inside the new network namespace, which has no route out):

- :func:`loopback_up_child` brings ``lo`` up (``SIOCSIFFLAGS``);
- :func:`prepare_relay_child` binds the in-sandbox relay's TCP socket on
  127.0.0.1 and sets ``HTTP_PROXY``/``HTTPS_PROXY`` for the worker;
- :func:`start_relay_child` forks the relay (after the worker's last
  confinement step, so it is confined the same way): it copies bytes between
  TCP clients on 127.0.0.1 and the host proxy's Unix socket, which the
  mounts step bound into the sandbox. It decides nothing: it is untrusted.

Host side: :class:`NetworkProxy` serves HTTP ``CONNECT``, absolute-form HTTP
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
import fcntl
import fnmatch
import ipaddress
import logging
import os
import select
import selectors
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ._common import ConfinementError, close_fds_except

log = logging.getLogger(__name__)

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_RUNNING = 0x40

#: Names that are cloud metadata endpoints whatever they resolve to.
METADATA_NAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    }
)
#: Networks never reachable through the proxy.
BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local, incl. 169.254.169.254 (AWS/GCP/Azure metadata)
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",  # "this host"
        "::/128",
        "::ffff:169.254.0.0/112",  # IPv4-mapped link-local
    )
)
LOOPBACK_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "::ffff:127.0.0.0/104"))


# ---------------------------------------------------------------------------
# HOST side: plan


def plan_network(*, mode: str, proxy_socket: str | None) -> dict[str, Any]:
    """HOST side: the network section of a child plan.

    ``mode`` is ``NetworkConfig.mode`` ("none", "allowlist", "any");
    ``proxy_socket`` is the in-sandbox path of the proxy's Unix socket (None
    without a proxy).
    """
    return {
        "enabled": True,
        "mode": mode,
        "loopback": True,
        "proxy_socket": proxy_socket if mode != "none" else None,
    }


# ---------------------------------------------------------------------------
# CHILD side


def loopback_up_child(section: dict[str, Any] | None, report: dict[str, Any]) -> None:
    """CHILD side: ``ip link set lo up`` with two ioctls (needs CAP_NET_ADMIN in the netns)."""
    if not section or not section.get("enabled") or not section.get("loopback"):
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
    report["network"] = {"mode": section.get("mode"), "loopback": "up"}


def prepare_relay_child(section: dict[str, Any] | None, report: dict[str, Any]) -> socket.socket | None:
    """CHILD side: bind the relay's listening socket and point the proxy variables at it."""
    if not section or not section.get("enabled") or not section.get("proxy_socket"):
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
    report.setdefault("network", {})["proxy"] = url
    return lsock


def start_relay_child(lsock: socket.socket | None, section: dict[str, Any] | None) -> None:
    """CHILD side: double-fork the relay (it is reparented to the sandbox's init).

    The worker closes its copy of the listening socket; the relay closes
    every other fd it inherited, the seccomp listener included.
    """
    if lsock is None or not section:
        return
    unix_path = section["proxy_socket"]
    pid = os.fork()
    if pid == 0:
        try:
            if os.fork() == 0:
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


# ---------------------------------------------------------------------------
# HOST side: the proxy


class _TokenBucket:
    """Bytes per second with one second of burst; ``consume`` sleeps as needed."""

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.tokens = float(rate)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def consume(self, n: int) -> None:
        while n > 0:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                take = min(n, int(self.tokens)) if self.tokens >= 1 else 0
                self.tokens -= take
                wait = 0.0 if take else (min(n, self.rate) - self.tokens) / self.rate
            n -= take
            if n > 0:
                time.sleep(max(wait, 0.001))


def _peer_pid(conn: socket.socket) -> int | None:
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", raw)[0])


Connector = Callable[[tuple[Any, ...], int, float], socket.socket]
Resolver = Callable[[str, int], list[tuple[int, tuple[Any, ...]]]]


def _default_connector(sockaddr: tuple[Any, ...], family: int, timeout: float) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sockaddr)
    except BaseException:
        s.close()
        raise
    s.settimeout(None)
    return s


def _default_resolver(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(fam, addr) for fam, _, _, _, addr in infos]


class NetworkProxy:
    """HOST side: the allowlist proxy behind the sandbox's Unix socket.

    ``allowed_hosts`` are ``host:port`` patterns (``*`` wildcards, as in
    ``NetworkConfig.allowed_hosts``); ``mode="any"`` allows every host that
    is not blocked. ``on_violation`` receives a violation dict per refusal.
    ``connector``/``resolver`` are replaceable for tests.
    """

    HEAD_LIMIT = 16 * 1024

    def __init__(
        self,
        socket_path: str,
        allowed_hosts: tuple[str, ...] | list[str] = (),
        bandwidth: int | None = None,
        *,
        mode: str | None = None,
        on_violation: Callable[[dict[str, Any]], None] | None = None,
        connector: Connector | None = None,
        resolver: Resolver | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.socket_path = socket_path
        self.allowed_hosts = tuple(allowed_hosts)
        self.mode = mode or ("allowlist" if self.allowed_hosts else "any")
        self.on_violation = on_violation
        self.connector = connector or _default_connector
        self.resolver = resolver or _default_resolver
        self.connect_timeout = connect_timeout
        self._up = _TokenBucket(bandwidth) if bandwidth else None
        self._down = _TokenBucket(bandwidth) if bandwidth else None
        self._lock = threading.Lock()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.decisions: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        self._conns: set[socket.socket] = set()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        self._listener.bind(socket_path)
        os.chmod(socket_path, 0o666)
        self._listener.listen(64)
        self._thread = threading.Thread(target=self._accept_loop, name="glsandbox-proxy", daemon=True)
        self._thread.start()

    # -- decisions ----------------------------------------------------------

    def decide(self, host: str, port: int) -> tuple[bool, str, list[tuple[int, tuple[Any, ...]]]]:
        """Allowed?, why, and the checked addresses to connect to (resolved once here)."""
        name = host.strip().strip("[]").rstrip(".").lower()
        if not name or not 0 < port < 65536:
            return False, "malformed destination", []
        if name in METADATA_NAMES:
            return False, "cloud metadata endpoint (always blocked)", []
        literal = _ip_or_none(name)
        if literal is not None and _blocked_ip(literal):
            return False, "link-local/metadata address (always blocked)", []
        explicit = False
        if self.mode == "allowlist":
            matched = [p for p in self.allowed_hosts if _pattern_matches(p, name, port)]
            if not matched:
                return False, "not in allowed_hosts", []
            explicit = any(p.rsplit(":", 1)[0].strip("[]").lower() == name for p in matched)
        try:
            addrs = self.resolver(name, port)
        except OSError as exc:
            return False, f"cannot resolve: {exc}", []
        ok: list[tuple[int, tuple[Any, ...]]] = []
        for fam, sockaddr in addrs:
            ip = _ip_or_none(str(sockaddr[0]))
            if ip is None or _blocked_ip(ip):
                return False, f"{name} resolves to a blocked address {sockaddr[0]}", []
            if any(ip in net for net in LOOPBACK_NETWORKS) and not explicit:
                return False, "host loopback is reachable only when listed explicitly", []
            ok.append((fam, sockaddr))
        if not ok:
            return False, "no address", []
        return True, "allowed", ok

    # -- serving --------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping:
            r, _, _ = select.select([self._listener.fileno(), self._wake_r], [], [])
            if self._wake_r in r or self._stopping:
                return
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="glsandbox-proxy-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            conn.settimeout(30.0)
            head, rest = self._read_head(conn)
            if head is None:
                return
            req = _parse_head(head)
            if req is None:
                conn.sendall(_http_error(400, "malformed proxy request"))
                return
            kind, host, port, forward_head = req
            allowed, reason, addrs = self.decide(host, port)
            pid = _peer_pid(conn)
            decision = {
                "host": host,
                "port": port,
                "allowed": allowed,
                "reason": reason,
                "time": time.time(),
                "kind": kind,
            }
            with self._lock:
                self.decisions.append(decision)
            if not allowed:
                self._violation(host, port, reason, pid)
                if kind == "forward":
                    conn.sendall(f"DENIED {reason}\n".encode())
                else:
                    conn.sendall(
                        _http_error(403, f"glsandbox: {host}:{port} blocked by the sandbox network policy: {reason}")
                    )
                return
            try:
                fam, sockaddr = addrs[0]
                upstream = self.connector(sockaddr, fam, self.connect_timeout)
            except OSError as exc:
                if kind == "forward":
                    conn.sendall(f"ERROR {exc.strerror or exc}\n".encode())
                else:
                    conn.sendall(_http_error(502, f"glsandbox: cannot connect to {host}:{port}: {exc}"))
                return
            if kind == "connect":
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            elif kind == "forward":
                conn.sendall(b"OK\n")
            first = (forward_head or b"") + rest
            if first:
                self._send_up(upstream, first)
            conn.settimeout(None)
            self._pump(conn, upstream)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()
            if upstream is not None:
                upstream.close()

    def _read_head(self, conn: socket.socket) -> tuple[bytes | None, bytes]:
        buf = b""
        while len(buf) < self.HEAD_LIMIT:
            chunk = conn.recv(4096)
            if not chunk:
                return None, b""
            buf += chunk
            if buf.startswith(b"FORWARD ") and b"\n" in buf:
                head, _, rest = buf.partition(b"\n")
                return head, rest
            if b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                return head, rest
        conn.sendall(_http_error(431, "request head too large"))
        return None, b""

    def _send_up(self, upstream: socket.socket, data: bytes) -> None:
        if self._up is not None:
            self._up.consume(len(data))
        upstream.sendall(data)
        with self._lock:
            self.bytes_sent += len(data)

    def _send_down(self, conn: socket.socket, data: bytes) -> None:
        if self._down is not None:
            self._down.consume(len(data))
        conn.sendall(data)
        with self._lock:
            self.bytes_received += len(data)

    def _pump(self, conn: socket.socket, upstream: socket.socket) -> None:
        open_socks = [conn, upstream]
        while open_socks and not self._stopping:
            r, _, _ = select.select([*(s.fileno() for s in open_socks), self._wake_r], [], [], 60.0)
            if self._wake_r in r:
                return
            for s in [x for x in open_socks if x.fileno() in r]:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    other = upstream if s is conn else conn
                    with contextlib.suppress(OSError):
                        other.shutdown(socket.SHUT_WR)
                    open_socks.remove(s)
                    continue
                if s is conn:
                    self._send_up(upstream, data)
                else:
                    self._send_down(conn, data)

    def _violation(self, host: str, port: int, reason: str, pid: int | None) -> None:
        record = {
            "kind": "network",
            "detail": f"connect {host}:{port} denied: {reason}",
            "syscall": None,
            "pid": pid,
            "time": time.time(),
            "trusted": True,
            "action": "denied",
            "escape": False,
            "host": host,
            "port": port,
            "source": "network-proxy",
        }
        with self._lock:
            self.violations.append(record)
        if self.on_violation is not None:
            try:
                self.on_violation(record)
            except Exception:
                log.exception("network proxy: on_violation callback failed")

    def stats(self) -> dict[str, int]:
        """Trusted byte counts: sandbox -> remote (sent), remote -> sandbox (received)."""
        with self._lock:
            return {"bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received}

    def stop(self) -> None:
        """Stop accepting, close every connection and the socket file. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(2.0)
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> NetworkProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _blocked_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        if _blocked_ip(ip.ipv4_mapped):
            return True
    return any(ip.version == net.version and ip in net for net in BLOCKED_NETWORKS)


def _pattern_matches(pattern: str, host: str, port: int) -> bool:
    phost, _, pport = pattern.rpartition(":")
    phost = phost.strip("[]").lower()
    if pport != "*" and pport != str(port):
        return False
    return fnmatch.fnmatchcase(host, phost)


def _split_hostport(text: str, default_port: int) -> tuple[str, int] | None:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        return None
    return (host, port) if host else None


def _parse_head(head: bytes) -> tuple[str, str, int, bytes | None] | None:
    """(kind, host, port, request head to send upstream or None)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:
        return None
    if text.startswith("FORWARD "):
        hp = _split_hostport(text[8:], 0)
        return None if hp is None else ("forward", hp[0], hp[1], None)
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    method, target, version = parts
    if method.upper() == "CONNECT":
        hp = _split_hostport(target, 443)
        return None if hp is None else ("connect", hp[0], hp[1], None)
    if not target.lower().startswith("http://"):
        return None
    rest = target[7:]
    authority, slash, path = rest.partition("/")
    hp = _split_hostport(authority, 80)
    if hp is None:
        return None
    headers = [
        h
        for h in lines[1:]
        if h and h.split(":", 1)[0].strip().lower() not in ("proxy-connection", "proxy-authorization", "connection")
    ]
    new_head = f"{method} /{path if slash else ''} {version}\r\n" + "".join(h + "\r\n" for h in headers)
    new_head += "Connection: close\r\n\r\n"
    return "http", hp[0], hp[1], new_head.encode("latin-1")


def _http_error(code: int, message: str) -> bytes:
    reason = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large", 502: "Bad Gateway"}.get(
        code, "Error"
    )
    body = (message + "\n").encode()
    return (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


__all__ = [
    "NetworkProxy",
    "loopback_up_child",
    "plan_network",
    "prepare_relay_child",
    "start_relay_child",
]
