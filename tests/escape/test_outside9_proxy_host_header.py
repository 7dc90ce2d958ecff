"""Outside review (10th): the proxy checks a plain-HTTP request's URL authority but forwards the sandbox's ``Host``.

Attack (MODERATE with ``allowed_hosts``): the sandbox sends the proxy
``GET http://<allowed host>/ HTTP/1.1`` with ``Host: admin.internal``.
``confinement/proxy._parse_head`` decides on the URL's authority, rewrites
the request line to the path and forwards every other header as it came, the
sandbox's ``Host`` included. A server that picks the site by ``Host`` (a CDN
edge, a shared hosting IP, a Kubernetes ingress, a reverse proxy in front
of internal vhosts) then serves a site the allowlist never named: with
``api.example.org:80`` allowed behind a CDN, every other plain-HTTP site on
that CDN is reachable, and exfiltration goes to any of them.

Measured here with a loopback HTTP server of the test's own, listed
literally (``127.0.0.1:PORT``): the request went through the host's proxy
and the server received ``Host: admin.internal``. Severity: low-medium
(allowlist bypass by virtual host for plain HTTP; CONNECT has the same shape
with TLS SNI, which the proxy cannot see: worth a README line).

Judged from the host (the server's side): every request the proxy forwards
carries the ``Host`` the allowlist decision was made on (or is refused).

Fix (suggested): ``_parse_head``: drop the client's ``Host`` header(s) and
write ``Host: <authority>`` from the checked URL; refuse a request with
several ``Host`` headers or an absolute URL whose authority differs.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from glsandbox_kernel.confinement.proxy import NetworkProxy


@pytest.fixture
def vhost_server() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Host", ""))
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_forwarded_request_carries_the_checked_host(tmp_path: Path, vhost_server: tuple[int, list[str]]) -> None:
    port, seen = vhost_server
    authority = f"127.0.0.1:{port}"
    proxy = NetworkProxy(str(tmp_path / "proxy.sock"), allowed_hosts=(authority,))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # what the sandbox's relay sends
            s.settimeout(20)
            s.connect(proxy.socket_path)
            s.sendall(f"GET http://{authority}/ HTTP/1.1\r\nHost: admin.internal\r\n\r\n".encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
    finally:
        proxy.stop()
    assert reply.startswith(b"HTTP/1."), reply[:200]
    if b" 200 " not in reply.split(b"\r\n", 1)[0]:
        return  # refused: secure
    assert seen, "the proxy answered 200 but the server saw no request"
    assert all(h == authority for h in seen), (
        f"the allowlist decided on {authority!r}; the server received Host: {seen!r} (a virtual host it never named)"
    )
