"""The host-side network proxy (HOST side; see :mod:`.network` for the step).

:class:`NetworkProxy` serves HTTP ``CONNECT``, absolute-form HTTP requests
and a plain ``FORWARD host:port`` line protocol on a Unix socket the mounts
step binds into the sandbox. It decides *before* connecting: link-local
addresses, cloud metadata names and addresses are always blocked; the host
itself (loopback and every address of its own interfaces, which reach the
same services) only when an allowlist entry names that address literally, or
``localhost`` for loopback, never through a name that resolves to it (DNS
rebinding) nor in ``mode="any"``; names are resolved once on
the host and the checked address is the one connected to. It counts bytes
both ways (the trusted ``network_bytes_sent/received``) and applies a
token-bucket bandwidth limit. Every refusal becomes a violation record.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from .addresses import BLOCKED_NETWORKS as BLOCKED_NETWORKS
from .addresses import LOOPBACK_NETWORKS as LOOPBACK_NETWORKS
from .addresses import METADATA_NAMES as METADATA_NAMES
from .addresses import blocked_ip, host_local, ip_or_none

log = logging.getLogger("glsandbox_kernel.confinement.network")


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
        literal = ip_or_none(name)
        if literal is not None and blocked_ip(literal):
            return False, "link-local/metadata address (always blocked)", []
        explicit = False
        if self.mode == "allowlist":
            matched = [p for p in self.allowed_hosts if _pattern_matches(p, name, port)]
            if not matched:
                return False, "not in allowed_hosts", []
            # only a literal address (or localhost) names the host itself; a public name never does
            explicit = (literal is not None or name == "localhost") and any(
                p.rsplit(":", 1)[0].strip("[]").lower() == name for p in matched
            )
        try:
            addrs = self.resolver(name, port)
        except OSError as exc:
            return False, f"cannot resolve: {exc}", []
        ok: list[tuple[int, tuple[Any, ...]]] = []
        for fam, sockaddr in addrs:
            ip = ip_or_none(str(sockaddr[0]))
            if ip is None or blocked_ip(ip):
                return False, f"{name} resolves to a blocked address {sockaddr[0]}", []
            if host_local(ip) and not explicit:
                return (
                    False,
                    "the host itself (loopback or its own address) is reachable only when listed literally",
                    [],
                )
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
            kind, host, port, forward_head, body = req
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
            if body is not None:  # plain HTTP: the request's own body, nothing after it
                rest, body = rest[:body], body - len(rest[:body])
            first = (forward_head or b"") + rest
            if first:
                self._send_up(upstream, first)
            conn.settimeout(None)
            self._pump(conn, upstream, body)
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
        # Counted before it is handed on: the sandbox cannot have seen bytes the count misses
        # (a call that returns right after reading them is measured with them).
        if self._down is not None:
            self._down.consume(len(data))
        with self._lock:
            self.bytes_received += len(data)
        conn.sendall(data)

    def _pump(self, conn: socket.socket, upstream: socket.socket, up_limit: int | None = None) -> None:
        """Relay both ways; ``up_limit``: at most that many more bytes go upstream (the rest is dropped)."""
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
                    if up_limit is not None:
                        data, up_limit = data[:up_limit], up_limit - len(data[:up_limit])
                    if data:
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


#: request headers the proxy never forwards: its own, hop-by-hop, and ``Host`` (written from the checked URL)
_DROPPED = frozenset({"proxy-connection", "proxy-authorization", "connection", "host"})


def _parse_head(head: bytes) -> tuple[str, str, int, bytes | None, int | None] | None:
    """(kind, host, port, request head to send upstream or None, body bytes to forward or None: no limit).

    A plain-HTTP request goes upstream with ``Host`` written from the URL
    authority the allowlist decided on (RFC 9112 3.2.2: a proxy replaces the
    client's ``Host``), never the client's own; a head with several ``Host``
    headers, a folded or malformed header line (a bare CR/LF or NUL that a
    lenient server could split differently), ``Transfer-Encoding`` or an
    unclear ``Content-Length`` is refused (None). One request per
    connection: only ``Content-Length`` bytes of body follow the head;
    anything the client sends after them (a pipelined request that could
    name another ``Host``) is dropped.
    """
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:
        return None
    if text.startswith("FORWARD "):
        hp = _split_hostport(text[8:], 0)
        return None if hp is None else ("forward", hp[0], hp[1], None, None)
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    method, target, version = parts
    if any(c in lines[0] for c in "\n\0\t"):  # the request line is the one line a server could split
        return None
    if method.upper() == "CONNECT":
        hp = _split_hostport(target, 443)
        return None if hp is None else ("connect", hp[0], hp[1], None, None)
    if not target.lower().startswith("http://"):
        return None
    rest = target[7:]
    authority, slash, path = rest.partition("/")
    hp = _split_hostport(authority, 80)
    if hp is None:
        return None
    headers: list[str] = []
    hosts = 0
    lengths: set[str] = set()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or any(c in line for c in "\r\n\0") or line[0] in " \t":
            return None
        key = name.lower()
        if key == "transfer-encoding":
            return None
        hosts += key == "host"
        if key == "content-length":
            lengths.add(value.strip())
        if key not in _DROPPED:
            headers.append(line)
    if hosts > 1 or len(lengths) > 1 or not all(v.isdigit() for v in lengths):
        return None
    body = int(lengths.pop()) if lengths else 0
    host, port = hp
    shown = f"[{host}]" if ":" in host else host
    new_head = f"{method} /{path if slash else ''} {version}\r\nHost: {shown if port == 80 else f'{shown}:{port}'}\r\n"
    new_head += "".join(h + "\r\n" for h in headers)
    new_head += "Connection: close\r\n\r\n"
    return "http", host, port, new_head.encode("latin-1"), body


def _http_error(code: int, message: str) -> bytes:
    reason = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large", 502: "Bad Gateway"}.get(
        code, "Error"
    )
    body = (message + "\n").encode()
    return (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
