"""Outside review 21: a cell's metadata copy of its record may be rewritten under its record_hash.

README (Evidence, "Not covered"): "cell metadata other than ``glsandbox`` (verify checks that copy:
its records against the audit output ...)". verify compares only the copy's ``record_hash`` (and
the hashes of ``preceding``), so a copy saying ``security_level: strict`` and no violations, with
a signed run's real record_hash kept, verifies OK with the key. A reader of
``cell.metadata.glsandbox.record`` (jq, a dashboard) is told something no record says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need


def test_edited_metadata_copy_of_record_fails_verify(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    need("namespace")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "glsandbox", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell("print('hello')"))
    (tmp_path / "nb.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    key = tmp_path / "signing.key"
    assert glsandbox_cli("keygen", str(key)).returncode == 0
    ran = glsandbox_cli("run", str(tmp_path / "nb.ipynb"), "--sign-key", str(key))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = tmp_path / "nb.glsandbox.ipynb"
    data = json.loads(out.read_text(encoding="utf-8"))
    copy = data["cells"][0]["metadata"]["glsandbox"]["record"]
    copy["security_level"] = "strict"  # the copy lies; its record_hash stays the real one
    copy["timestamp"] = 1.0
    tampered = tmp_path / "tampered.ipynb"
    tampered.write_text(json.dumps(data), encoding="utf-8")
    verdict = glsandbox_cli("audit", "verify", str(tampered), "--pubkey", f"{key}.pub")
    assert verdict.returncode == 1, verdict.stdout
    assert "metadata" in verdict.stdout and "edited" in verdict.stdout, verdict.stdout
