"""Review 12: the server guard checks a path, then jupyter_server deletes by the path (a folder swapped for a link between).

Attack: at LENIENT a sandboxed cell writes its project folder and may leave
a process running. It keeps a folder ``proj/data`` (holding ``victim.txt``)
and a symbolic link ``proj/swap -> <host folder>`` and exchanges the two
names atomically (``renameat2(RENAME_EXCHANGE)``) in a loop. The user deletes
``proj/data/victim.txt`` in JupyterLab. ``server_links._Paths.delete_file``
walks the path with ``O_NOFOLLOW`` and, when it finds a folder, lets
jupyter_server's ``delete_file`` run, which resolves the path string again
(``exists``, ``isdir``, ``os.unlink``/``send2trash``): if the link was swapped
in meanwhile, the host's ``victim.txt`` goes. Only ``open`` (the reader) holds
the folder it checked; rename, folder copy and delete use the checked path.

Measured (real ``jupyter server`` on 127.0.0.1, both contents managers, the
swapping loop in its own process as the cell would run it): the host file is
removed within a few dozen DELETE requests (each one alone is a 403 or a
delete of the project's own file).

``/files/`` (tornado's ``StaticFileHandler``: ``realpath`` check, then
``open`` of the path string) has the same window: the host file's text is
sent within a few hundred requests.

Severity: medium (a race, but the cell controls its timing and may retry at
every user delete; the same window lets a PATCH rename move a host file into
the project). Judged from the host: whether the host file still exists.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..jupyter.test_server_save_links import HOST_TEXT, _call
from ..jupyter.test_server_save_links import server as server  # the real server fixture (both managers)

pytestmark = pytest.mark.timeout(300)

SWAPPER = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    a, b = (p.encode() for p in sys.argv[1:3])
    print("ready", flush=True)
    while True:
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            sys.exit(ctypes.get_errno())
        real = a if not os.path.islink(a) else b
        decoy = os.path.join(real, b"victim.txt")
        if not os.path.lexists(decoy):
            with open(decoy, "w") as f:
                f.write("the project's own file\\n")
    """
)


@contextlib.contextmanager
def _swapping(server: dict[str, Any], name: str) -> Iterator[Callable[[], None]]:
    """``root/<name>/data`` swapped with ``root/<name>/swap -> host/<name>`` in a loop; yields a liveness check."""
    host = Path(server["host"]) / name
    host.mkdir()
    (host / "victim.txt").write_text(HOST_TEXT)
    proj = Path(server["root"]) / name
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "victim.txt").write_text("the project's own file\n")
    os.symlink(host, proj / "swap")
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(proj / "data"), str(proj / "swap")], stdout=subprocess.PIPE, text=True
    )

    def alive() -> None:
        assert swapper.poll() is None, "the swapping loop stopped (renameat2 unsupported?)"

    try:
        assert swapper.stdout is not None and swapper.stdout.readline().strip() == "ready"
        yield alive
    finally:
        swapper.kill()
        swapper.wait()


def test_delete_does_not_remove_a_host_file_through_a_folder_swapped_after_the_check(server: dict[str, Any]) -> None:
    victim = Path(server["host"]) / "o11-race" / "victim.txt"
    replies: dict[int, int] = {}
    with _swapping(server, "o11-race") as alive:
        for _ in range(400):
            status, _reply = _call(server, "DELETE", "o11-race/data/victim.txt")
            replies[status] = replies.get(status, 0) + 1
            if not victim.exists():
                break
            alive()
    assert victim.exists() and victim.read_text() == HOST_TEXT, f"host file removed; replies {replies}"


def _files(server: dict[str, Any], path: str) -> bytes:
    req = urllib.request.Request(f"{server['url']}/files/{path}", headers={"Authorization": f"token {server['token']}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return bytes(r.read())
    except urllib.error.HTTPError as e:
        return bytes(e.read())
    except http.client.IncompleteRead as e:  # the length of one file, the bytes of the other
        return bytes(e.partial)
    except (OSError, http.client.HTTPException):  # tornado drops the connection when the file changes under it
        return b""


def test_files_does_not_send_a_host_file_through_a_folder_swapped_after_the_check(server: dict[str, Any]) -> None:
    """``/files/`` is tornado's: it resolves the path (realpath) then opens the path string again."""
    sent = False
    with _swapping(server, "o11-race-files") as alive:
        for _ in range(400):
            if HOST_TEXT.encode() in _files(server, "o11-race-files/data/victim.txt"):
                sent = True
                break
            alive()
    assert not sent, "/files/ sent the host file"
