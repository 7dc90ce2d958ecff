"""Outside review 18: one sandbox holds an unbounded number of host proxy threads and fds.

Severity: medium-high (MODERATE with ``allowed_hosts`` and LENIENT, every
backend that uses the host proxy: namespace, chroot, basic, container).

Attack: sandboxed code opens many connections to its proxy socket and sends
each a few bytes of a request head, never the blank line (slowloris), one
byte per ~20 s to keep each inside the 30 s per-recv timeout. The defaults
allow 256 open files per process and 64 processes: ~16 000 held connections.

What the host saw: ``NetworkProxy`` accepts every connection and starts one
host thread per connection (``glsandbox-proxy-conn``), each holding a host
fd; there is no per-proxy cap and no deadline for the whole head (only
``settimeout(30)`` per ``recv``). Here 400 half-heads from one client give
400 live host threads and 400 host fds. With the defaults a sandbox reaches
the host process's own fd limit (``ulimit -n`` 20000 here) and thread
limits, so the host process (the kernel and every other sandbox's proxy,
cgroup reads, QEMU sockets in the same process) fails to open files or start
threads.

Expected: a bounded number of concurrent connections per proxy (extras
refused with 503 or closed, and recorded), and a deadline for the request
head as a whole.

Fix direction (``confinement/proxy.py``): a semaphore / counter in
``_accept_loop`` (e.g. 64 concurrent per proxy, refusal recorded as a
violation), an absolute head deadline in ``_read_head``; optionally one
selector thread instead of a thread per connection.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time

import pytest

from glsandbox_kernel.confinement.proxy import NetworkProxy

FLOOD = 400
CAP = 128  # any reasonable per-proxy cap is far below this


def _proxy_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "glsandbox-proxy-conn")


def test_half_heads_do_not_hold_unbounded_host_threads(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = os.path.join(str(tmp_path_factory.mktemp("proxy")), "p.sock")
    clients: list[socket.socket] = []
    with NetworkProxy(path, (), None, mode="any") as proxy:
        before = _proxy_threads()
        try:
            closed_early = 0
            for _ in range(FLOOD):
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(path)
                try:
                    c.sendall(b"GET http://example.invalid/ HTTP/1.1\r\nX-Slow: ")
                except (BrokenPipeError, ConnectionResetError):
                    # Over the cap the proxy may answer 503 and close before the head is even sent: refused.
                    c.close()
                    closed_early += 1
                    continue
                clients.append(c)
            # Wait until every client is either served by a host thread or refused by the proxy.
            refused: set[int] = set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ready, _, _ = select.select([c for c in clients if c.fileno() not in refused], [], [], 0.2)
                refused.update(c.fileno() for c in ready)
                held = _proxy_threads() - before
                if held + len(refused) + closed_early >= FLOOD:
                    break
            held = _proxy_threads() - before
        finally:
            for c in clients:
                c.close()
        assert proxy.decisions == []  # no head was ever complete: nothing decided
    assert held <= CAP, f"{held} host proxy threads (and fds) held by {FLOOD} half-sent heads from one client"
