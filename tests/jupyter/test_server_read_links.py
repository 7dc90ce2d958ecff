"""The server extension never reads, renames, copies or deletes through a link a sandboxed cell planted.

At LENIENT a cell can write the project folder, so it can plant a symbolic
link to a host file or folder there; the server (unsandboxed, as the user)
would follow it. Each test plants the link as the cell would (directly: the
test is about the server), then calls a real ``jupyter server`` on 127.0.0.1
over its REST API (contents API and ``/files/``, with the token), once with the
default AsyncLargeFileManager and once with the synchronous
FileContentsManager, and checks the reply is a 403 naming the link, the host
file's text was never sent, and nothing on the host moved or vanished.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .test_server_save_links import HOST_TEXT, _call, _host_file, _notebook
from .test_server_save_links import server as server  # the same real server fixture (both contents managers)

pytestmark = pytest.mark.timeout(180)

PLANTED = "is a symbolic link a sandboxed cell may have planted"


def _refused(status: int, reply: Any, action: str) -> None:
    assert status == 403, (status, reply)
    assert PLANTED in reply["message"] and action in reply["message"], reply
    assert HOST_TEXT not in json.dumps(reply)


def _files(server: dict[str, Any], path: str) -> tuple[int, bytes]:
    """GET ``/files/<path>`` (what JupyterLab's download and "Open in New Browser Tab" use)."""
    req = urllib.request.Request(f"{server['url']}/files/{path}", headers={"Authorization": f"token {server['token']}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _folder(server: dict[str, Any], name: str) -> Path:
    path = Path(server["root"]) / name
    path.mkdir()
    return path


def test_a_linked_file_or_notebook_is_not_sent_to_the_browser(server: dict[str, Any]) -> None:
    proj = _folder(server, "r1")
    secret = _host_file(server, "id_rsa")
    os.symlink(secret, proj / "key.txt")
    os.symlink(_host_file(server, "host.ipynb", json.dumps(_notebook(HOST_TEXT)["content"])), proj / "nb.ipynb")
    for path in ("r1/key.txt?content=1", "r1/key.txt?content=1&format=base64", "r1/nb.ipynb?content=1"):
        status, reply = _call(server, "GET", path)
        _refused(status, reply, "not read, nothing sent")
    status, body = _files(server, "r1/key.txt")
    assert status == 403 and HOST_TEXT.encode() not in body, (status, body[:300])
    # the folder still lists, the link shown by name (its content is what is refused)
    status, listing = _call(server, "GET", "r1?content=1")
    assert status == 200 and sorted(e["name"] for e in listing["content"]) == ["key.txt", "nb.ipynb"]


def test_nothing_is_read_or_listed_through_a_linked_folder(server: dict[str, Any]) -> None:
    secret = _host_file(server, "ssh/id_ed25519")
    os.symlink(secret.parent, Path(server["root"]) / "r2")
    for path in ("r2/id_ed25519?content=1", "r2?content=1"):
        status, reply = _call(server, "GET", path)
        _refused(status, reply, "not read, nothing sent")
    status, body = _files(server, "r2/id_ed25519")
    assert status == 403 and HOST_TEXT.encode() not in body, (status, body[:300])


def test_the_reader_alone_refuses_a_link_swapped_in_after_the_check(tmp_path: Path) -> None:
    """The race window: the path was checked, then the link appeared; the reader opens with O_NOFOLLOW."""
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from tornado.web import HTTPError

    from glsandbox_kernel.notebook.server_links import guard_contents

    root, host = tmp_path / "root", tmp_path / "host.txt"
    root.mkdir()
    host.write_text(HOST_TEXT)
    manager = FileContentsManager(root_dir=str(root))
    assert guard_contents(manager) == ["reads", "gets", "renames", "copies", "deletes"]
    (root / "sub").mkdir()
    os.symlink(host, root / "sub" / "a.txt")
    with pytest.raises(HTTPError) as raised:
        manager._read_file(str(root / "sub" / "a.txt"), "text")
    assert raised.value.status_code == 403 and PLANTED in str(raised.value.log_message)
    os.unlink(root / "sub" / "a.txt")
    (root / "sub" / "a.txt").write_text("mine\n")
    assert manager._read_file(str(root / "sub" / "a.txt"), "text")[0] == "mine\n"


def test_a_rename_does_not_move_a_host_file_in_or_a_project_file_out(server: dict[str, Any]) -> None:
    proj = _folder(server, "r3")
    secret = _host_file(server, "keys/id_rsa")
    os.symlink(secret.parent, proj / "keys")
    (proj / "mine.txt").write_text("mine\n")
    # a host file moved into the project through the linked folder
    status, reply = _call(server, "PATCH", "r3/keys/id_rsa", {"path": "r3/stolen.txt"})
    _refused(status, reply, "not renamed")
    assert secret.read_text() == HOST_TEXT and not (proj / "stolen.txt").exists()
    # a project file moved into the host folder
    status, reply = _call(server, "PATCH", "r3/mine.txt", {"path": "r3/keys/autostart.txt"})
    _refused(status, reply, "not renamed")
    assert sorted(os.listdir(secret.parent)) == ["id_rsa"] and (proj / "mine.txt").exists()
    # onto a link (dangling: jupyter_server's "already exists" check follows it)
    os.symlink(Path(server["host"]) / "not-yet", proj / "dangling.txt")
    status, reply = _call(server, "PATCH", "r3/mine.txt", {"path": "r3/dangling.txt"})
    _refused(status, reply, "not renamed")
    assert os.path.islink(proj / "dangling.txt") and (proj / "mine.txt").read_text() == "mine\n"
    # a normal rename still works
    status, reply = _call(server, "PATCH", "r3/mine.txt", {"path": "r3/yours.txt"})
    assert status == 200 and (proj / "yours.txt").read_text() == "mine\n", reply


def test_a_copy_does_not_bring_a_host_file_into_the_project(server: dict[str, Any]) -> None:
    proj = _folder(server, "r4")
    secret = _host_file(server, "copy/secret.ipynb", json.dumps(_notebook(HOST_TEXT)["content"]))
    os.symlink(secret, proj / "link.ipynb")
    status, reply = _call(server, "POST", "r4", {"copy_from": "r4/link.ipynb"})
    _refused(status, reply, "not copied")
    # a folder holding a link: jupyter_server's folder copy follows links inside it
    inner = _folder(server, "r4/inner")
    os.symlink(secret, inner / "data.ipynb")
    status, reply = _call(server, "POST", "r4", {"copy_from": "r4/inner"})
    _refused(status, reply, "not copied")
    assert sorted(os.listdir(proj)) == ["inner", "link.ipynb"]
    assert not [p for p in Path(server["root"]).rglob("*") if not p.is_symlink() and HOST_TEXT in _text(p)]
    # a normal copy still works
    os.unlink(inner / "data.ipynb")
    (inner / "plain.txt").write_text("x\n")
    status, reply = _call(server, "POST", "r4", {"copy_from": "r4/inner"})
    assert status == 201, reply


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def test_a_delete_does_not_remove_a_host_file_below_a_linked_folder(server: dict[str, Any]) -> None:
    proj = _folder(server, "r5")
    secret = _host_file(server, "del/important.txt")
    os.symlink(secret.parent, proj / "data")
    status, reply = _call(server, "DELETE", "r5/data/important.txt")
    _refused(status, reply, "not deleted")
    assert secret.read_text() == HOST_TEXT
    # a link to a file can itself be deleted (only the link goes)
    os.symlink(secret, proj / "key.txt")
    status, _ = _call(server, "DELETE", "r5/key.txt")
    assert status == 204 and not os.path.lexists(proj / "key.txt") and secret.read_text() == HOST_TEXT
