"""sockmem: the kernel memory queued in sockets, read through sock_diag (real sockets, no mocks)."""

from __future__ import annotations

import inspect
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from glsandbox_kernel import memory_guard, sockmem

from ..conftest import ROOT, as_user


def _fill(sock: socket.socket) -> int:
    """Send on ``sock`` until the kernel refuses more; the bytes sent."""
    sock.setblocking(False)
    sent = 0
    try:
        while True:
            sent += sock.send(b"x" * 65536)
    except BlockingIOError:
        return sent


@pytest.fixture
def filled_pair() -> Iterator[tuple[socket.socket, socket.socket, int]]:
    a, b = socket.socketpair()
    sent = _fill(a)
    yield a, b, sent
    a.close()
    b.close()


def test_a_unix_sockets_queued_data_is_charged_to_its_sender(
    filled_pair: tuple[socket.socket, socket.socket, int],
) -> None:
    a, b, sent = filled_pair
    with sockmem.open_diag() as diag:
        found = sockmem.unix_memory(diag)
    ino_a, ino_b = os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino
    assert found[ino_a] >= sent > 0
    assert found[ino_b] < sent // 4  # nothing sent that way: not counted twice


def test_tcp_loopback_queues_are_counted() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        sent = _fill(client)
        with sockmem.open_diag() as diag:
            found = sockmem.inet_memory(diag)
        both = found.get(os.fstat(client.fileno()).st_ino, 0) + found.get(os.fstat(peer.fileno()).st_ino, 0)
        assert both >= sent > 0
    finally:
        for s in (client, peer, server):
            s.close()


def test_tree_resident_adds_the_trees_socket_buffers(filled_pair: tuple[socket.socket, socket.socket, int]) -> None:
    _, _, sent = filled_pair
    diag = sockmem.DiagSockets()
    try:
        plain = memory_guard.tree_resident([os.getpid()])
        counted = memory_guard.tree_resident([os.getpid()], diag)
    finally:
        diag.close()
    assert plain is not None and counted is not None
    assert counted - plain >= sent


HOLDER = r"""
import socket, sys, time
a, b = socket.socketpair()
sent = _fill(a)
held = socket.socketpair()
socket.send_fds(held[0], [b"f"], [a.fileno(), b.fileno()])  # in flight: in no fd table
a.close(); b.close()
print(sent, flush=True)
time.sleep(60)
"""

PROBE = r"""
import subprocess, sys
from glsandbox_kernel import sockmem
holder = subprocess.Popen(["unshare", "-Urn", sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
try:
    sent = int(holder.stdout.readline())
    diag = sockmem.DiagSockets()
    ns = sockmem.netns_of(holder.pid)
    print("RESULT", sent, diag.foreign(ns), diag.charged({ns: (holder.pid, set())}))
    diag.close()
finally:
    holder.kill()
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare missing")
def test_an_unprivileged_host_counts_every_socket_of_a_sandboxs_own_netns() -> None:
    """As uid 65534: a process in a user and network namespace of its own (as rootless NAMESPACE)
    hides a filled pair in flight; the host, through the helper that joins those namespaces,
    counts it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        as_user([sys.executable, "-c", PROBE, "import socket\n" + inspect.getsource(_fill) + HOLDER]),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    sent, foreign, charged = lines[0]
    assert foreign == "True"
    assert int(charged) >= int(sent) > 0
