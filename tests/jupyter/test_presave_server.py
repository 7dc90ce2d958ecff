"""The pre-save hook as Jupyter loads it: a server extension enabled by the shipped config file.

A real ``jupyter server`` on 127.0.0.1 with a random token, whose config
directory holds only ``jupyter-config/jupyter_server_config.d/glsandbox.json``
as shipped; a notebook holding audit outputs (made by a real sandbox) is
saved through the contents API (PUT) and read back (GET).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from glsandbox_kernel.notebook.verify import verify_notebook

from ..jupyter_fixtures import jupyter_server
from .test_evidence import SOURCES, build_notebook

pytestmark = pytest.mark.timeout(180)

SERVER_KEY = "server-side-hmac-key-for-the-seal"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("server")
    root = base / "root"
    root.mkdir()
    with jupyter_server(base, root, env={"GLSANDBOX_AUDIT_KEY": SERVER_KEY}) as server:
        yield server


def _api(server: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{server['url']}/api/contents/{path}",
        data=data,
        method=method,
        headers={"Authorization": f"token {server['token']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def test_saving_through_the_contents_api_writes_the_evidence_metadata(server: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "kernel.key").write_text(SERVER_KEY)  # the kernel signed its records with the server's key
    nb = build_notebook(SOURCES[:2], key_path=str(tmp_path / "kernel.key"))
    assert all("glsandbox" not in c.metadata for c in nb.cells)  # the kernel writes outputs only
    _api(
        server, "PUT", "saved.ipynb", {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))}
    )
    got = _api(server, "GET", "saved.ipynb?content=1")["content"]
    saved = nbformat.from_dict(got)
    nbformat.validate(saved)
    for cell in saved.cells:
        copy_ = cell.metadata["glsandbox"]
        assert (
            copy_["record"]["record_hash"]
            == cell.outputs[-1].data["application/vnd.glsandbox.audit+json"]["record"]["record_hash"]
        )
        assert copy_["seal"]["digest"] == saved.metadata["glsandbox"]["seal"]["digest"]
    assert saved.metadata["glsandbox"]["seal"]["signature"]  # the server's key signed the seal
    result = verify_notebook(saved, SERVER_KEY.encode())
    assert result.ok, result.problems
    assert saved.metadata["glsandbox"]["sealed_by"]["by"] == "jupyter-server pre-save hook"
    assert "pre-save hook registered" in server["log"].read_text()
    # on disk too (the hook ran before the write)
    on_disk = nbformat.read(str(server["root"] / "saved.ipynb"), as_version=4)
    assert on_disk.metadata["glsandbox"]["seal"] == saved.metadata["glsandbox"]["seal"]


def test_an_edit_saved_through_the_server_is_still_caught(server: dict[str, Any]) -> None:
    """The hook re-seals what it is given; the cell records still show the edit."""
    nb = build_notebook(SOURCES[:2])
    nb.cells[0].outputs[0]["text"] = "x is 41\n"
    _api(
        server,
        "PUT",
        "edited.ipynb",
        {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))},
    )
    saved = nbformat.from_dict(_api(server, "GET", "edited.ipynb?content=1")["content"])
    problems = verify_notebook(saved, SERVER_KEY.encode()).problems
    assert any("cell 1 (In [1]): output 1 edited" in p for p in problems), problems


def test_the_server_key_does_not_vouch_for_records_no_kernel_with_it_signed(server: dict[str, Any]) -> None:
    """The server signs what the browser sent: records it cannot verify get an unsigned seal, marked as its own."""
    nb = build_notebook(SOURCES[:2])  # records without a signature (or, as well, made up in the browser)
    body = {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))}
    _api(server, "PUT", "unvouched.ipynb", body)
    saved = nbformat.from_dict(_api(server, "GET", "unvouched.ipynb?content=1")["content"])
    meta = saved.metadata["glsandbox"]
    assert "signature" not in meta["seal"] and meta["signed"] is False, meta["seal"]
    assert (
        meta["sealed_by"]["by"] == "jupyter-server pre-save hook"
        and "not a 'glsandbox run'" in meta["sealed_by"]["note"]
    )
    result = verify_notebook(saved, SERVER_KEY.encode())
    assert not result.ok
    assert any("seal is not signed" in p for p in result.problems), result.problems
