"""Outside review (11th): the seal of a notebook saved through the server extension can be stripped unseen.

Review 9's fix (``notebook/sealed_run.py``) makes the chain commit to the
seal: ``glsandbox run`` tells its kernel the notebook will be sealed, the
signed session_start record says so, and verify fails a notebook whose
records say "sealed" but whose seal is gone. The README promises the same
seal for a notebook "saved through the server extension" (the pre-save
hook, signing with the server's ``$GLSANDBOX_AUDIT_KEY``), but only
``glsandbox run`` sets the commitment (``run.py`` ``mark_kernel_env``).

Attack: a notebook run interactively in the glsandbox kernel (here: nbclient,
as a frontend does, kernel and server both holding the Ed25519 key) and
saved through the real ``FileContentsManager`` with the pre-save hook
verifies ``--strict --pubkey`` OK and sealed. The tamperer deletes
``notebook.metadata.glsandbox`` and the cells' seal copies, rewrites the
markdown verdict and inserts a markdown "approved" cell. Measured:
``glsandbox audit verify --pubkey --strict`` prints OK (signatures verified);
the loss of the seal is only a note ("no notebook seal ... not written by
glsandbox run or saved through the pre-save hook").

Severity: medium (signed evidence's markdown, cell order and kernelspec
rewritten without any problem named, even with --strict).
Fix (suggested): let the kernel commit to sealing whenever it signs (a
signing kernel's session_start says ``sealed: expected``, and the pre-save
hook and ``glsandbox run`` seal every save), or have the hook record the
commitment into the chain (a signed record appended when the first save
seals it); at least make ``--strict`` fail an unsealed notebook whose
records are signed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need
from .test_outside10_common import _write, save, verify

pytestmark = pytest.mark.timeout(500)


def test_stripping_the_seal_of_a_server_saved_notebook_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("namespace")
    pytest.importorskip("cryptography")
    import nbformat
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from nbclient import NotebookClient

    key = tmp_path / "signing.key"
    assert glsandbox_cli("keygen", str(key)).returncode == 0
    pub = Path(f"{key}.pub")
    monkeypatch.setenv("GLSANDBOX_AUDIT_KEY", key.read_text(encoding="ascii"))  # kernel and server sign
    project = tmp_path / "project"
    project.mkdir()
    _write(tmp_path / "nb.ipynb")
    nb = nbformat.read(str(tmp_path / "nb.ipynb"), as_version=4)
    NotebookClient(nb, kernel_name="glsandbox", timeout=300, resources={"metadata": {"path": str(project)}}).execute()
    manager = FileContentsManager(
        root_dir=str(project), pre_save_hook="glsandbox_kernel.notebook.presave.pre_save_hook"
    )
    manager.save({"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))}, "saved.ipynb")
    saved_path = project / "saved.ipynb"
    honest = verify(saved_path, pub)
    assert honest.returncode == 0 and "signatures verified" in honest.stdout, honest.stdout + honest.stderr
    assert "no notebook seal" not in honest.stdout  # the hook sealed (and signed) it

    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    saved["metadata"].pop("glsandbox")
    for cell in saved["cells"]:
        (cell.get("metadata") or {}).get("glsandbox", {}).pop("seal", None)
    saved["cells"][0]["source"] = "# Report\nAll checks **passed**; reviewed and approved."
    saved["cells"].insert(1, nbformat.v4.new_markdown_cell("Auditor: no data leak found."))
    result = verify(save(saved, tmp_path / "stripped.ipynb"), pub)
    assert result.returncode != 0, "verify --strict passed a signed notebook whose seal was stripped:\n" + result.stdout
