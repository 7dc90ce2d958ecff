"""Outside review (16th, auditor): verify does not say that the Jupyter server made the seal.

Done: a real Jupyter server with the shipped extension and a key (``$GLSANDBOX_AUDIT_KEY``); a
notebook whose records a kernel signed with that key is saved through the contents API
(PUT), as JupyterLab saves it. Then, long after the cells ran, a markdown cell is added
("All checks **passed**; no data left the sandbox.") and the notebook saved again: the hook
re-seals and signs it, with ``metadata.glsandbox.sealed_by`` = "jupyter-server pre-save hook
... sealed when the server saved what the frontend sent; not a 'glsandbox run'".

Verify said (``--key --strict``): ``OK: ... signatures verified``, and nothing else: no word
that the seal is the server's (what a browser sent at some save), not a ``glsandbox run``'s
(the markdown fixed when the cells ran). ``glsandbox audit verify`` prints neither
``sealed_by`` nor its time, so an auditor cannot tell a prose verdict written after the run
from one that was in the notebook when it ran.

Expected: verify (and ``glsandbox report``) print who sealed and when, e.g. "note: sealed by
the Jupyter server's pre-save hook at 2026-12-02T05:30:00+00:00: markdown, raw cells and the
cell order are what the frontend sent at that save, not fixed by a run". Severity: low
(misleading presentation; the data is in the notebook, covered by the digest).

Fix (suggested): ``notebook/seal.py:check_seal`` adds a note from ``nb_meta["sealed_by"]``
(and one for a ``glsandbox run`` seal); ``notebook/report.py`` shows it in the summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from ..jupyter.test_evidence import SOURCES, build_notebook
from ..jupyter.test_presave_server import _api
from ..jupyter_fixtures import jupyter_server

pytestmark = pytest.mark.timeout(300)

SERVER_KEY = "server-side-hmac-key-for-review-16"


def test_verify_says_the_server_sealed_the_notebook(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    key = tmp_path / "kernel.key"
    key.write_text(SERVER_KEY)
    nb = build_notebook(SOURCES[:2], key_path=str(key))  # a kernel with the server's key signed these
    root = tmp_path / "root"
    root.mkdir()
    with jupyter_server(tmp_path / "server", root, env={"GLSANDBOX_AUDIT_KEY": SERVER_KEY}) as server:
        body = {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))}
        _api(server, "PUT", "saved.ipynb", body)
        later = _api(server, "GET", "saved.ipynb?content=1")["content"]
        later["cells"].insert(0, nbformat.v4.new_markdown_cell("All checks **passed**; no data left the sandbox."))
        _api(server, "PUT", "saved.ipynb", {"type": "notebook", "format": "json", "content": later})
    saved = json.loads((root / "saved.ipynb").read_text(encoding="utf-8"))
    assert saved["metadata"]["glsandbox"]["sealed_by"]["by"] == "jupyter-server pre-save hook"
    got = glsandbox_cli("audit", "verify", str(root / "saved.ipynb"), "--key", str(key), "--strict")
    assert got.returncode == 0, got.stdout + got.stderr  # honest: the server signed what it was sent
    out = got.stdout.lower()
    assert "pre-save hook" in out or "sealed by" in out or "jupyter server" in out, got.stdout
