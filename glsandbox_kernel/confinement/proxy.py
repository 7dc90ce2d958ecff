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
token-bucket bandwidth limit. Every destination is checked to be an IP
literal or an LDH host name first (:func:`.addresses.destination_name`), for
every request kind, so the name matched is the name resolved.

Bounds, per proxy (one per sandbox): at most ``max_connections`` open at once
(more are answered 503 and closed, recorded), a request head of at most 16
KiB within ``head_timeout`` seconds. Every refusal is counted in ``counts``
and becomes a violation record through the per-call rate limit of the seccomp
supervisor (:class:`~glsandbox_kernel.ratelimit.RecordLimiter`: 8 of one kind,
then one a second with ``repeats``, the rest as summaries at the call's end),
so the records' :func:`~glsandbox_kernel.supervisor.violation_count` adds up
to every refusal; ``decisions`` and ``violations`` keep the latest
:data:`KEPT` each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ..ratelimit import RecordLimiter
from .addresses import BLOCKED_NETWORKS as BLOCKED_NETWORKS
from .addresses import LOOPBACK_NETWORKS as LOOPBACK_NETWORKS
from .addresses import METADATA_NAMES as METADATA_NAMES
from .addresses import blocked_ip, destination_name, host_local, ip_or_none
from .proxy_head import _http_error, _pattern_matches
from .proxy_head import _parse_head as _parse_head

#: How many of the latest decisions and violation records a proxy keeps (``counts`` counts them all).
KEPT = 256

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
    ``connector``/``resolver`` are replaceable for tests. ``max_connections``
    connections at once (one host thread and fd each), a head within
    ``head_timeout`` seconds.
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
        max_connections: int = 64,
        head_timeout: float = 10.0,
    ) -> None:
        self.socket_path = socket_path
        self.allowed_hosts = tuple(allowed_hosts)
        self.mode = mode or ("allowlist" if self.allowed_hosts else "any")
        self.on_violation = on_violation
        self.connector = connector or _default_connector
        self.resolver = resolver or _default_resolver
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self._up = _TokenBucket(bandwidth) if bandwidth else None
        self._down = _TokenBucket(bandwidth) if bandwidth else None
        self._lock = threading.Lock()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.decisions: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        #: Exact totals: decisions allowed / refused, connections over the cap, heads too slow or too large.
        self.counts = {"allowed": 0, "refused": 0, "over_capacity": 0, "slow_heads": 0, "large_heads": 0}
        self._limiter = RecordLimiter(8, 1.0, max_kinds=64)
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
        name = destination_name(host)
        if name is None:
            return False, "malformed destination (neither an IP address nor a host name of letters, digits, -)", []
        if not 0 < port < 65536:
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
                full = len(self._conns) >= self.max_connections
                if full:
                    self.counts["over_capacity"] += 1
                else:
                    self._conns.add(conn)
            if full:
                self._refuse_over_capacity(conn)
                continue
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
                self.counts["allowed" if allowed else "refused"] += 1
                _keep(self.decisions, decision)
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

    def _refuse_over_capacity(self, conn: socket.socket) -> None:
        """Accept thread: answer 503 without blocking, close, record (rate-limited)."""
        reason = f"more than {self.max_connections} proxy connections open at once"
        try:
            conn.setblocking(False)
            conn.send(_http_error(503, f"glsandbox: {reason}"))
        except OSError:
            pass
        pid = _peer_pid(conn)
        conn.close()
        self._violation("*", 0, reason, pid)

    def _read_head(self, conn: socket.socket) -> tuple[bytes | None, bytes]:
        buf = b""
        deadline = time.monotonic() + self.head_timeout
        while len(buf) < self.HEAD_LIMIT:
            left = deadline - time.monotonic()
            if left <= 0:
                with self._lock:
                    self.counts["slow_heads"] += 1
                conn.sendall(_http_error(408, f"request head not complete within {self.head_timeout:g} s"))
                return None, b""
            conn.settimeout(min(left, 30.0))
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return None, b""
            buf += chunk
            if buf.startswith(b"FORWARD ") and b"\n" in buf:
                head, _, rest = buf.partition(b"\n")
                return head, rest
            if b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                return head, rest
        with self._lock:
            self.counts["large_heads"] += 1
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
        host = _shown(host)
        admitted = self._limiter.admit((host, port, reason))
        if admitted is None:
            return  # counted (``counts``, the limiter) and summarised at the call's end
        kind, repeats = admitted
        detail = f"connect {host}:{port} denied: {reason}" if port else f"proxy connection refused: {reason}"
        if kind != (host, port, reason):
            detail += " (one of many different refusals in this call, merged)"
        record: dict[str, Any] = {
            "kind": "network",
            "detail": detail,
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
        if repeats:
            record["repeats"] = repeats
        self._limiter.written(kind, record)
        self._deliver(record)

    def _deliver(self, record: dict[str, Any]) -> None:
        with self._lock:
            _keep(self.violations, record)
        if self.on_violation is not None:
            try:
                self.on_violation(record)
            except Exception:
                log.exception("network proxy: on_violation callback failed")

    def begin_call(self) -> None:
        """HOST side, when a call starts (through the worker): pending repeats as summaries, limit afresh."""
        for summary in self._limiter.summaries(reset=True):
            self._deliver(summary)

    def end_call(self) -> None:
        """HOST side, when a call has ended (still the running one): its suppressed refusals as summaries."""
        for summary in self._limiter.summaries(reset=False):
            self._deliver(summary)

    def stats(self) -> dict[str, int]:
        """Trusted byte counts: sandbox -> remote (sent), remote -> sandbox (received)."""
        with self._lock:
            return {"bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received}

    def stop(self) -> None:
        """Stop accepting, close every connection and the socket file; write pending summaries. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self.begin_call()
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


def _keep(records: list[dict[str, Any]], record: dict[str, Any]) -> None:
    """Append, keeping the latest :data:`KEPT` (caller holds the lock)."""
    records.append(record)
    if len(records) > KEPT:
        del records[: len(records) - KEPT]


def _shown(host: str) -> str:
    """``host`` as a record shows it: printable ASCII, at most 256 characters (a refused name may be anything)."""
    if not (host.isascii() and host.isprintable()):
        host = ascii(host)[1:-1]
    return host if len(host) <= 256 else host[:253] + "..."
