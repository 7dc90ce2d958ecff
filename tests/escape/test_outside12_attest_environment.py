"""Outside review (13th): ``glsandbox attest`` signs the attesting machine's environment as the run's.

``notebook/attest.py: build_statement`` writes ``"environment": nb_meta.get("environment") or
environment()``; ``metadata.environment`` is documented as "versions of what ran the
notebook". A notebook executed in the glsandbox kernel and saved without ``glsandbox run``
(nbclient here, as a frontend that saves without the server extension) has no
``metadata.glsandbox.environment``: the statement then carries the Python, OS, glsandbox and
Jupyter versions of the machine (and moment) that ATTESTS, unmarked, signed.

Measured: the notebook holds no environment; the signed predicate has
``environment: {"python": ..., "os": ..., "glsandbox": ...}`` computed by ``attest``.
A third party reads it as the environment the cells ran in.

Severity: low (signed but unfounded provenance; misleading when attesting elsewhere or later,
e.g. a CI job attesting notebooks produced on analysts' machines).
Fix (suggested): put the notebook's environment only when the notebook has one (else ``null``,
or take the session_start record's environment), and the attester's under its own key
(``attested_by``).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need

pytestmark = pytest.mark.timeout(400)


def test_attest_does_not_sign_its_own_environment_as_the_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need("namespace")
    pytest.importorskip("cryptography")
    import nbformat
    from nbclient import NotebookClient

    key = tmp_path / "signing.key"
    assert glsandbox_cli("keygen", str(key)).returncode == 0
    monkeypatch.setenv("GLSANDBOX_AUDIT_KEY", key.read_text(encoding="ascii"))  # the kernel signs its records
    project = tmp_path / "project"
    project.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell("print('total: 17')"))
    NotebookClient(nb, kernel_name="glsandbox", timeout=300, resources={"metadata": {"path": str(project)}}).execute()
    saved = project / "saved.ipynb"
    nbformat.write(nb, str(saved))
    assert "environment" not in (json.loads(saved.read_text(encoding="utf-8"))["metadata"].get("glsandbox") or {})
    att = tmp_path / "saved.intoto.jsonl"
    glsandbox_cli("attest", str(saved), "--sign-key", str(key), "-o", str(att))
    envelope = json.loads(att.read_text(encoding="utf-8").splitlines()[0])
    predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    assert not predicate.get("environment"), (
        "the attestation signs an environment the notebook does not hold (the attester's): "
        f"{predicate.get('environment')}"
    )
