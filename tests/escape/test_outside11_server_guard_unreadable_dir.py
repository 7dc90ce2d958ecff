"""Review 12: a folder the cell made execute-only turns the server guard off for everything below it.

Attack: at LENIENT a sandboxed cell writes its project folder. It makes
``proj/x`` (mode 0o111: search, no read) holding a link ``keys -> <host
folder>``. ``server_links.check_path`` walks the path by opening each folder
``O_RDONLY | O_DIRECTORY``; opening ``x`` fails with EACCES, and
``check_path`` treats every ``OSError`` of the walk as "missing, leave it to
jupyter_server". jupyter_server then resolves the path string, which needs
only search permission, and follows the link: a PATCH rename moves a host
file into the project (where the sandbox reads it), a DELETE removes a host
file, and a folder copy (``check_tree``: ``os.walk`` of the linked top
folder) copies a whole host folder into the project. Only the reader (its
own ``open``) still refuses, as a permission error.

Measured (real ``jupyter server`` on 127.0.0.1, both contents managers, the
server as an unprivileged user): rename 200 and the host file is in the
project, delete 204 and the host file is gone, copy 201 and the host folder's
text is in the project.

Severity: high (the guard's rename/copy/delete promises are void, with no
race; the cell chooses the folder's mode). Judged from the host: where the
host files are afterwards. Fix: walk with ``O_PATH | O_NOFOLLOW`` (or
``O_SEARCH``) and refuse, not allow, on any error other than ENOENT.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..jupyter.test_server_save_links import HOST_TEXT, MANAGERS, _call
from ..jupyter_fixtures import jupyter_server

pytestmark = pytest.mark.timeout(180)

NOBODY = 65534


@pytest.fixture(scope="module", params=sorted(MANAGERS))
def server(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The real server of tests/jupyter/test_server_save_links.py, run as an unprivileged user (nobody when root)."""
    base = Path(tempfile.mkdtemp(prefix=f"o11-perm-{request.param}-"))  # pytest's tmp is root's 0700 folder
    (base / "root").mkdir()
    (base / "host").mkdir()
    mp = pytest.MonkeyPatch()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to run the server as an unprivileged user")
        for p in (base, base / "root", base / "host"):
            os.chown(p, NOBODY, NOBODY)
        wrapper = base / "python-as-nobody"
        wrapper.write_text(
            f'#!/bin/sh\nexec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups {sys.executable} "$@"\n'
        )
        wrapper.chmod(0o755)
        mp.setattr(sys, "executable", str(wrapper))  # the fixture's launcher runs the server through it
    args = [*MANAGERS[request.param], "--FileContentsManager.delete_to_trash=False"]
    try:
        with jupyter_server(base, base / "root", env={"GLSANDBOX_AUDIT_KEY": None, "HOME": str(base)}, args=args) as s:
            mp.undo()
            yield {**s, "host": base / "host"}
    finally:
        mp.undo()
        for p in base.rglob("*"):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        for p in [path, *path.rglob("*")]:
            os.chown(p, NOBODY, NOBODY, follow_symlinks=False)


@contextlib.contextmanager
def _planted(server: dict[str, Any], name: str) -> Iterator[tuple[Path, Path]]:
    """``root/<name>/x`` (0o111) holding ``keys -> host/<name>`` with ``secret.txt``; yields (project, host folder)."""
    host = Path(server["host"]) / name
    host.mkdir()
    (host / "secret.txt").write_text(HOST_TEXT)
    proj = Path(server["root"]) / name
    (proj / "x").mkdir(parents=True)
    os.symlink(host, proj / "x" / "keys")
    _own(host)
    _own(proj)
    os.chmod(proj / "x", stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    try:
        yield proj, host
    finally:
        os.chmod(proj / "x", 0o755)


def test_rename_does_not_move_a_host_file_in_below_an_execute_only_folder(server: dict[str, Any]) -> None:
    with _planted(server, "o11-ren") as (proj, host):
        status, reply = _call(server, "PATCH", "o11-ren/x/keys/secret.txt", {"path": "o11-ren/stolen.txt"})
    assert (host / "secret.txt").exists() and not (proj / "stolen.txt").exists(), (status, reply)
    assert status == 403, (status, reply)


def test_delete_does_not_remove_a_host_file_below_an_execute_only_folder(server: dict[str, Any]) -> None:
    with _planted(server, "o11-del") as (_proj, host):
        status, reply = _call(server, "DELETE", "o11-del/x/keys/secret.txt")
    assert (host / "secret.txt").exists(), (status, reply)
    assert status == 403, (status, reply)


def test_copy_does_not_bring_a_host_folder_in_below_an_execute_only_folder(server: dict[str, Any]) -> None:
    with _planted(server, "o11-cp") as (proj, _host):
        status, reply = _call(server, "POST", "o11-cp", {"copy_from": "o11-cp/x/keys"})
    copied = [p for p in proj.rglob("*") if p.is_file() and not p.is_symlink() and HOST_TEXT in p.read_text()]
    assert not copied, (status, reply, copied)
    assert status == 403, (status, reply)


def test_a_host_folder_is_not_listed_below_an_execute_only_folder(server: dict[str, Any]) -> None:
    """The listing: names, sizes and times of the host folder's files go to the browser."""
    with _planted(server, "o11-ls"):
        status, reply = _call(server, "GET", "o11-ls/x/keys?content=1")
    assert status == 403 and "secret.txt" not in str(reply), (status, reply)


def test_no_folder_is_made_in_a_host_folder_below_an_execute_only_folder(server: dict[str, Any]) -> None:
    """A directory save is jupyter_server's ``os.mkdir``, not one of the replaced writers."""
    with _planted(server, "o11-mk") as (_proj, host):
        status, reply = _call(server, "PUT", "o11-mk/x/keys/autostart", {"type": "directory"})
    assert sorted(os.listdir(host)) == ["secret.txt"], (status, reply)
    assert status == 403, (status, reply)
