"""Outside review: a read-only project folder lets the sandbox talk to a host service's socket in it.

Attack: a host service listens on a Unix socket inside the project folder
(a database's socket dir, a dev server started with ``--sock``, an editor's
IPC socket; ``readonly_paths`` folders alike). The NAMESPACE backend shows
the project read-only, but a read-only bind mount does not stop
``connect()`` on a socket inode (the kernel's EROFS check covers regular
files, folders and symlinks only). The CONTAINER backend's bind of the project at
``/work/project`` likewise. Measured here at MODERATE on both: the sandbox
sent ``DROP TABLE`` to the host service and read its answer.

Judged from the host: the service this test starts sees no connection and
no bytes.

Fix (suggested): ``project.py`` / ``confinement/mounts.py``: treat socket
and FIFO entries of every shown folder like masked names (``/dev/null`` bind
over them, or left out), at every level; say so in the README's "Masked
names" paragraph.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _backend(name: str) -> object:
    ok, why = backends()[name].available()
    return pytest.param(name, marks=() if ok else pytest.mark.skip(reason=f"{name}: {why}"))


#: where each backend shows the project folder (containers: at /work/project)
SHOWN_AT = {"namespace": None, "container": "/work/project"}


def attack_talk(path: str) -> object:
    """SANDBOX side: connect to ``path``, send a command, return the answer (or the errno)."""
    import socket as s

    sock = s.socket(s.AF_UNIX, s.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(path)
        sock.sendall(b"DROP TABLE results;")
        return sock.recv(100)
    except OSError as exc:
        return exc.errno
    finally:
        sock.close()


@pytest.fixture
def project_with_a_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, list[bytes]]]:
    project = str(tmp_path_factory.mktemp("project"))
    os.chmod(project, 0o755)
    path = os.path.join(project, "service.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(4)
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.settimeout(2)
            try:
                received.append(conn.recv(100))
                conn.sendall(b"host service answered")
            except OSError:
                pass
            conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield project, path, received
    finally:
        stop.set()
        thread.join(2)
        server.close()


@pytest.mark.parametrize("backend", [_backend("namespace"), _backend("container")])
def test_read_only_project_gives_no_access_to_a_host_socket(
    backend: str, project_with_a_service: tuple[str, str, list[bytes]]
) -> None:
    project, path, received = project_with_a_service
    fs = FilesystemConfig(project_dir=project, project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType(backend), filesystem=fs)
    inside = os.path.join(SHOWN_AT[backend] or project, os.path.basename(path))
    with OSSandbox(cfg) as sb:
        answer = sb.execute(attack_talk, inside)
    assert received == [], f"the host service got {received} from the sandbox (answer {answer!r})"
    assert not isinstance(answer, bytes), answer


def attack_write_fifo(path: str) -> object:
    """SANDBOX side: open a FIFO for writing without blocking and write a command; 'written' or the errno."""
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        return exc.errno
    try:
        os.write(fd, b"rm -rf results/\n")
        return "written"
    finally:
        os.close(fd)


@pytest.mark.parametrize("backend", [_backend("namespace"), _backend("container")])
def test_read_only_project_gives_no_write_to_a_host_fifo(backend: str, tmp_path: Any) -> None:
    """The same for a named pipe a host process reads (a job queue, a log collector): the EROFS check
    of a read-only mount does not cover FIFOs either."""
    project = tmp_path / "project"
    project.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(project, 0o755)
    fifo = project / "jobs.fifo"
    os.mkfifo(fifo, 0o666)
    os.chmod(fifo, 0o666)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the host service, reading
    try:
        fs = FilesystemConfig(project_dir=str(project), project_access="read")
        cfg = create_config_by_level("moderate", isolation_type=IsolationType(backend), filesystem=fs)
        inside = os.path.join(SHOWN_AT[backend] or str(project), "jobs.fifo")
        with OSSandbox(cfg) as sb:
            result = sb.execute(attack_write_fifo, inside)
        try:
            got = os.read(reader, 100)
        except BlockingIOError:
            got = b""
    finally:
        os.close(reader)
    assert got == b"", f"{backend}: the host's FIFO received {got!r} from the sandbox ({result})"
