"""The proxy's plain-HTTP requests carry the Host the allowlist decided on, one request each (review 10 finding 5).

Every case runs the real :class:`NetworkProxy` against a loopback TCP server
of the test's own (listed literally), which records every byte the proxy
sends it until the proxy half-closes, then answers 200.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from glsandbox_kernel.confinement.proxy import NetworkProxy


class Recorder:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(20)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.received.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.fixture
def server() -> Iterator[Recorder]:
    rec = Recorder()
    try:
        yield rec
    finally:
        rec.listener.close()


def send(tmp_path: Path, authority: str, raw: bytes) -> bytes:
    proxy = NetworkProxy(str(tmp_path / "proxy.sock"), allowed_hosts=(authority,))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(20)
            s.connect(proxy.socket_path)
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
            return reply
    finally:
        proxy.stop()


def test_client_host_is_replaced_by_the_checked_authority(tmp_path: Path, server: Recorder) -> None:
    auth = f"127.0.0.1:{server.port}"
    reply = send(tmp_path, auth, f"GET http://{auth}/p?q=1 HTTP/1.1\r\nHost: admin.internal\r\nX-A: 1\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
    assert server.received == [f"GET /p?q=1 HTTP/1.1\r\nHost: {auth}\r\nX-A: 1\r\nConnection: close\r\n\r\n".encode()]


def test_request_without_host_gets_the_checked_one(tmp_path: Path, server: Recorder) -> None:
    auth = f"127.0.0.1:{server.port}"
    send(tmp_path, auth, f"GET http://{auth} HTTP/1.0\r\n\r\n".encode())
    assert server.received == [f"GET / HTTP/1.0\r\nHost: {auth}\r\nConnection: close\r\n\r\n".encode()]


@pytest.mark.parametrize(
    "extra",
    [
        "Host: a\r\nHost: b\r\n",  # several Host headers
        "X-A: 1\nHost: admin.internal\r\n",  # a bare LF a lenient server splits into a Host line
        "X-A: 1\r\n Host: admin.internal\r\n",  # an obs-fold continuation
        "Host : admin.internal\r\n",  # whitespace before the colon
        "Transfer-Encoding: chunked\r\n",  # a body whose end the proxy would have to parse
        "Content-Length: 1\r\nContent-Length: 2\r\n",
        "Content-Length: -1\r\n",
        "no colon here\r\n",
    ],
)
def test_ambiguous_heads_are_refused(tmp_path: Path, server: Recorder, extra: str) -> None:
    auth = f"127.0.0.1:{server.port}"
    reply = send(tmp_path, auth, f"GET http://{auth}/ HTTP/1.1\r\n{extra}\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert server.received == []


def test_only_the_body_follows_the_head_never_a_pipelined_request(tmp_path: Path, server: Recorder) -> None:
    auth = f"127.0.0.1:{server.port}"
    smuggled = b"GET / HTTP/1.1\r\nHost: admin.internal\r\n\r\n"
    head = f"POST http://{auth}/up HTTP/1.1\r\nHost: {auth}\r\nContent-Length: 5\r\n\r\n".encode()
    reply = send(tmp_path, auth, head + b"hello" + smuggled)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
    want = f"POST /up HTTP/1.1\r\nHost: {auth}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".encode()
    assert server.received == [want]


def test_a_large_body_is_forwarded_whole(tmp_path: Path, server: Recorder) -> None:
    auth = f"127.0.0.1:{server.port}"
    body = bytes(range(256)) * 4096  # 1 MiB, past the first read
    head = f"PUT http://{auth}/b HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    send(tmp_path, auth, head + body + b"GET / HTTP/1.1\r\n\r\n")
    assert len(server.received) == 1
    assert server.received[0].endswith(b"\r\n\r\n" + body)
