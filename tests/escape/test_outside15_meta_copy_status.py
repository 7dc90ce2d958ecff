"""Outside review (16th, auditor): the cell-metadata copy's summary fields are not checked.

Done: a real signed ``glsandbox run --sign-key --allow-errors`` whose second cell raises. Each code
cell's ``metadata.glsandbox`` holds, besides the record copy and the seal copy, a summary
(``status``, ``hashes_match``, ``source_hash``, ``outputs_hash``) that tools read without
re-deriving it. The tamperer sets the failed cell's ``status`` from ``"error"`` to ``"ok"`` (and
its ``source_hash`` to zeros, ``hashes_match`` to false on the other cell).

Verify said (``--pubkey --strict``): ``OK: ... signatures verified`` (exit 0).

Expected: ``VOLATILE_FIELDS`` lists ``cell.metadata (except glsandbox)``, so ``cell.metadata
.glsandbox`` is documented as covered; a copy whose summary disagrees with its own record
must be named ("cell 3: its metadata copy says status 'ok', its record says 'error'").
Severity: low (what the visible audit line and verify show is right; a script or dashboard
reading the metadata summary is lied to under a signed, sealed, --strict OK).

Fix (suggested): ``notebook/verify.py`` (where it compares the metadata copy with the audit
output) re-derives the summary with ``notebook/metadata.py``'s builder from the record and the
cell and reports any difference; or the summary fields are dropped from the copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_outside5_common import need, write_notebook
from .test_outside10_common import save, verify

pytestmark = pytest.mark.timeout(600)


def _write(path: Path) -> None:
    write_notebook(path, "print('fine')", "raise ValueError('the check failed')")


def test_an_edited_status_in_the_metadata_copy_fails_verify(tmp_path: Path) -> None:
    need("namespace")
    out, key = _signed_with_errors(tmp_path)
    pub = Path(f"{key}.pub")
    honest = verify(out, pub)
    assert honest.returncode == 0, honest.stdout + honest.stderr
    nb = json.loads(out.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert cells[1]["metadata"]["glsandbox"]["status"] == "error"
    cells[1]["metadata"]["glsandbox"]["status"] = "ok"
    cells[1]["metadata"]["glsandbox"]["source_hash"] = "0" * 64
    cells[0]["metadata"]["glsandbox"]["hashes_match"] = False
    got = verify(save(nb, tmp_path / "tampered.ipynb"), pub)
    assert got.returncode != 0, f"the metadata copy says the failed cell passed, and verify said:\n{got.stdout}"


def _signed_with_errors(tmp_path: Path) -> tuple[Path, Path]:
    from ..conftest import glsandbox_cli

    key = tmp_path / "signing.key"
    made = glsandbox_cli("keygen", str(key))
    assert made.returncode == 0, made.stderr
    _write(tmp_path / "nb.ipynb")
    out = tmp_path / "out.ipynb"
    ran = glsandbox_cli("run", str(tmp_path / "nb.ipynb"), "-o", str(out), "--sign-key", str(key), "--allow-errors")
    assert out.exists(), ran.stdout + ran.stderr
    return out, key
