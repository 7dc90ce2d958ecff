"""Outside review, second pass: what BASIC shares with the host beyond files and sockets.

BASIC has no IPC namespace, shares the host's filesystem and runs under an
outside memory monitor that measures the worker tree's resident memory. A
second review found four ways around that, each judged here from the host:

- System V shared memory (``shmget``/``shmat``) lived on after ``close()``,
  held memory past the limit and could attach the host's own segments;
- ``memfd_create`` + ``write`` held 504 MiB under a 256 MiB limit, unseen
  (pages written but never mapped are in no process's RSS);
- ``prctl(PR_SET_CHILD_SUBREAPER, 0)`` let a double-forked grandchild fall to
  the template, outside the monitored tree (the CLONE_PARENT fix's twin);
- an unbound ``socketpair(AF_UNIX, SOCK_DGRAM)`` socket still ``sendto()``s any
  host datagram socket (``/dev/log``, journald, ``/run/systemd/notify``).

Fixed in ``confinement/seccomp.py`` (``HOST_IPC``, the datagram socketpair and
the subreaper rule); each attack must now fail inside and leave nothing outside.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

cloudpickle.register_pickle_by_value(sys.modules[__name__])

OK, WHY = backends()["basic"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"basic: {WHY}"), pytest.mark.timeout(120)]


def attack_ipc() -> dict[str, Any]:
    """SANDBOX side: try SysV shm, memfd, clearing the subreaper flag; errno or 'ok' for each."""
    import ctypes
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    out: dict[str, Any] = {}
    shmid = libc.shmget(0, 16 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    out["shmget"] = "ok" if shmid >= 0 else ctypes.get_errno()
    if shmid >= 0:
        libc.shmctl(shmid, 0, None)  # IPC_RMID: leave nothing even if the test fails
    try:
        fd = os.memfd_create("x")
        os.close(fd)
        out["memfd_create"] = "ok"
    except OSError as exc:
        out["memfd_create"] = exc.errno
    r = libc.prctl(36, 0, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, 0
    out["clear_subreaper"] = "ok" if r == 0 else ctypes.get_errno()
    return out


def attack_datagram(path: str) -> Any:
    """SANDBOX side: sendto() a host datagram socket through an unbound socketpair end."""
    import socket as s

    try:
        a, b = s.socketpair(s.AF_UNIX, s.SOCK_DGRAM)
    except OSError as exc:
        return exc.errno
    try:
        a.sendto(b"from the sandbox", path)
        return "sent"
    except OSError as exc:
        return exc.errno
    finally:
        a.close()
        b.close()


def _host_segments() -> set[str]:
    out = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, check=False).stdout
    return {line.split()[1] for line in out.splitlines() if line[:2] == "0x"}


@pytest.mark.parametrize("level", ["strict", "moderate"])
def test_basic_has_no_host_ipc_memfd_or_subreaper_escape(level: str) -> None:
    before = _host_segments()
    cfg = create_config_by_level(level, isolation_type=IsolationType.BASIC)
    with OSSandbox(cfg) as sb:
        got = sb.execute(attack_ipc)
    assert got["shmget"] != "ok", got
    assert got["memfd_create"] != "ok", got
    assert got["clear_subreaper"] != "ok", got
    assert _host_segments() <= before, "a System V segment outlived the sandbox"


@pytest.fixture
def host_datagram(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, socket.socket]]:
    folder = tmp_path_factory.mktemp("dgram")  # a host folder the sandbox is not shown
    path = os.path.join(str(folder), "service.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o777)
    sock.setblocking(False)
    try:
        yield path, sock
    finally:
        sock.close()


def test_basic_cannot_send_to_a_host_datagram_socket(host_datagram: tuple[str, socket.socket]) -> None:
    path, sock = host_datagram
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.BASIC)
    with OSSandbox(cfg) as sb:
        result = sb.execute(attack_datagram, path)
    try:
        received = sock.recv(100)
    except BlockingIOError:
        received = b""
    assert received == b"", f"the host's datagram socket got {received!r} from the sandbox"
    assert result != "sent", result
