"""The server extension refuses to save through a link a sandboxed cell planted in the project.

At LENIENT a cell can write the notebook's folder, so it can replace the
notebook, its folder, ``.ipynb_checkpoints`` or the checkpoint with a symbolic
link to a host file; jupyter_server's writer follows such links. Each test
plants the link as the cell would (directly: the test is about the server),
then saves through a real ``jupyter server`` on 127.0.0.1 (its contents REST
API with the token), once with the default AsyncLargeFileManager and once
with the synchronous FileContentsManager, and checks the host file is
unchanged and the reply an error; a normal save still works.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from ..jupyter_fixtures import jupyter_server

pytestmark = pytest.mark.timeout(180)

HOST_TEXT = "a host file the sandbox can never write\n"
MANAGERS = {
    "async-large": [],
    "sync": ["--ServerApp.contents_manager_class=jupyter_server.services.contents.filemanager.FileContentsManager"],
}


@pytest.fixture(scope="module", params=sorted(MANAGERS))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp(f"links-{request.param}")
    root = base / "root"
    root.mkdir()
    (base / "host").mkdir()
    args = [*MANAGERS[request.param], "--FileContentsManager.delete_to_trash=False"]  # deletes: no trash in HOME
    with jupyter_server(base, root, env={"GLSANDBOX_AUDIT_KEY": None}, args=args) as s:
        yield {**s, "host": base / "host"}


def _call(server: dict[str, Any], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{server['url']}/api/contents/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"token {server['token']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _notebook(text: str = "print(1)") -> dict[str, Any]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(text)])
    return {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))}


def _host_file(server: dict[str, Any], name: str, text: str = HOST_TEXT) -> Path:
    path = Path(server["host"]) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _refused(status: int, reply: Any, what: str = "is a symbolic link a sandboxed cell may have planted") -> None:
    assert status == 403, (status, reply)
    assert what in reply["message"] and "not saved, nothing overwritten" in reply["message"], reply


def test_a_notebook_replaced_by_a_link_is_not_written_through(server: dict[str, Any]) -> None:
    host = _host_file(server, "bashrc")
    os.symlink(host, server["root"] / "linked.ipynb")
    status, reply = _call(server, "PUT", "linked.ipynb", _notebook())
    _refused(status, reply)
    assert host.read_text() == HOST_TEXT
    assert os.path.islink(server["root"] / "linked.ipynb")
    # a text file (the editor's save) the same way
    os.symlink(host, server["root"] / "linked.py")
    status, reply = _call(server, "PUT", "linked.py", {"type": "file", "format": "text", "content": "evil\n"})
    _refused(status, reply)
    assert host.read_text() == HOST_TEXT


def test_a_folder_replaced_by_a_link_is_not_written_into(server: dict[str, Any]) -> None:
    host = _host_file(server, "autostart/nb.ipynb")
    os.symlink(host.parent, server["root"] / "sub")
    for name in ("nb.ipynb", "new.ipynb"):  # an existing host file, and a new file in the host folder
        status, reply = _call(server, "PUT", f"sub/{name}", _notebook())
        _refused(status, reply)
    assert host.read_text() == HOST_TEXT
    assert sorted(os.listdir(host.parent)) == ["nb.ipynb"]


def test_a_linked_checkpoint_folder_is_refused_before_the_notebook_is_written(server: dict[str, Any]) -> None:
    host_dir = Path(server["host"]) / "checkpoints-here"
    host_dir.mkdir()
    proj = server["root"] / "proj"
    proj.mkdir()
    (proj / "nb.ipynb").write_text(json.dumps(_notebook("before")["content"]))
    os.symlink(host_dir, proj / ".ipynb_checkpoints")
    status, reply = _call(server, "PUT", "proj/nb.ipynb", _notebook("after"))
    _refused(status, reply)
    assert os.listdir(host_dir) == []
    assert "before" in (proj / "nb.ipynb").read_text()


def test_creating_a_checkpoint_never_writes_through_a_link(server: dict[str, Any]) -> None:
    """No pre-save hook runs for a checkpoint: the link-safe copy refuses by itself."""
    proj = server["root"] / "proj2"
    proj.mkdir()
    assert _call(server, "PUT", "proj2/nb.ipynb", _notebook())[0] in (200, 201)
    host = _host_file(server, "cp/nb-checkpoint.ipynb")
    checkpoints = proj / ".ipynb_checkpoints"
    for entry in checkpoints.iterdir():
        entry.unlink()
    checkpoints.rmdir()
    os.symlink(host.parent, checkpoints)  # the whole folder
    status, reply = _call(server, "POST", "proj2/nb.ipynb/checkpoints")
    _refused(status, reply)
    assert host.read_text() == HOST_TEXT
    os.unlink(checkpoints)
    checkpoints.mkdir()
    os.symlink(host, checkpoints / "nb-checkpoint.ipynb")  # the checkpoint itself
    status, reply = _call(server, "POST", "proj2/nb.ipynb/checkpoints")
    _refused(status, reply)
    assert host.read_text() == HOST_TEXT


def test_restoring_a_linked_checkpoint_does_not_copy_a_host_file_into_the_project(server: dict[str, Any]) -> None:
    proj = server["root"] / "proj3"
    proj.mkdir()
    assert _call(server, "PUT", "proj3/nb.ipynb", _notebook("mine"))[0] in (200, 201)
    secret = _host_file(server, "secret.ipynb", json.dumps(_notebook("host secret")["content"]))
    checkpoint = proj / ".ipynb_checkpoints" / "nb-checkpoint.ipynb"
    checkpoint.unlink()
    os.symlink(secret, checkpoint)
    status, reply = _call(server, "POST", "proj3/nb.ipynb/checkpoints/checkpoint")
    _refused(status, reply)
    assert "host secret" not in (proj / "nb.ipynb").read_text()


def test_a_later_chunk_of_an_upload_does_not_append_through_a_link(server: dict[str, Any]) -> None:
    host = _host_file(server, "big.bin")
    chunk = {"type": "file", "format": "text", "content": "chunk\n", "chunk": 1}
    assert _call(server, "PUT", "big.bin", chunk)[0] in (200, 201)
    os.unlink(server["root"] / "big.bin")
    os.symlink(host, server["root"] / "big.bin")  # swapped in between two chunks
    status, reply = _call(server, "PUT", "big.bin", {**chunk, "chunk": -1})
    _refused(status, reply)
    assert host.read_text() == HOST_TEXT


def test_a_normal_save_still_works_and_keeps_the_file_mode(server: dict[str, Any]) -> None:
    folder = server["root"] / "plain"
    folder.mkdir()
    assert _call(server, "PUT", "plain/nb.ipynb", _notebook("first"))[0] in (200, 201)
    os.chmod(folder / "nb.ipynb", 0o640)
    status, _ = _call(server, "PUT", "plain/nb.ipynb", _notebook("second"))
    assert status == 200
    status, got = _call(server, "GET", "plain/nb.ipynb?content=1")
    assert status == 200 and got["content"]["cells"][0]["source"] == "second"
    st = os.lstat(folder / "nb.ipynb")
    assert oct(st.st_mode & 0o777) == oct(0o640)
    assert sorted(os.listdir(folder)) == [".ipynb_checkpoints", "nb.ipynb"]  # no temporary file left
    assert sorted(os.listdir(folder / ".ipynb_checkpoints")) == ["nb-checkpoint.ipynb"]
    assert _call(server, "POST", "plain/nb.ipynb/checkpoints")[0] == 201
    assert _call(server, "POST", "plain/nb.ipynb/checkpoints/checkpoint")[0] == 204
    assert _call(server, "PUT", "plain/notes.txt", {"type": "file", "format": "text", "content": "x\n"})[0] == 201
    assert (folder / "notes.txt").read_text() == "x\n"
    assert "saves through a symbolic link refused" in server["log"].read_text()


def test_the_writer_alone_refuses_a_link_swapped_in_after_the_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race window: the hook passed, then the link appeared. A real contents manager without the hook."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))  # the notary's signature database
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from tornado.web import HTTPError

    from glsandbox_kernel.notebook.presave import guard_writers

    root, host = tmp_path / "root", tmp_path / "host.txt"
    root.mkdir()
    host.write_text(HOST_TEXT)
    manager = FileContentsManager(root_dir=str(root))
    assert guard_writers(manager) == ["writes", "checkpoints"]
    os.symlink(host, root / "nb.ipynb")
    with pytest.raises(HTTPError) as raised:
        manager.save(_notebook(), "nb.ipynb")
    assert raised.value.status_code == 403
    assert host.read_text() == HOST_TEXT
    manager.use_atomic_writing = False  # the in-place writer opens with O_NOFOLLOW
    with pytest.raises(HTTPError):
        manager.save(_notebook(), "nb.ipynb")
    assert host.read_text() == HOST_TEXT
    os.unlink(root / "nb.ipynb")
    os.link(host, root / "nb.ipynb")  # a second name for a host file: rewriting in place would change it
    with pytest.raises(HTTPError):
        manager.save(_notebook(), "nb.ipynb")
    assert host.read_text() == HOST_TEXT
