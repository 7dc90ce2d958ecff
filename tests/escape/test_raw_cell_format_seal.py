"""A raw cell's format (``metadata.raw_mimetype``) is part of the notebook seal.

nbconvert's HTML export inserts a raw cell whose ``raw_mimetype`` is
``text/html`` (or empty) into the page as HTML, and leaves out one marked
``text/latex``. The source was sealed, the format was not, so a tamperer
could turn a sealed LaTeX/text raw cell into live HTML after the run and
verify still said OK. A real ``glsandbox run --sign-key`` seals the notebook;
``glsandbox audit verify --pubkey`` must name the change. A format-2 seal
(made before the format was covered) is still checked as it was made.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need, signed_run

pytestmark = pytest.mark.timeout(400)

RAW = "<script>document.title = 'accuracy 0.99'</script>"


def _notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_raw_cell(RAW, metadata={"raw_mimetype": "text/latex"}))
    nb.cells.append(nbformat.v4.new_code_cell("print(6 * 7)"))
    nbformat.write(nb, str(path))


def test_changing_a_raw_cells_format_after_the_run_fails_verify(tmp_path: Path) -> None:
    need("namespace")
    out, key = signed_run(tmp_path, _notebook)
    honest = glsandbox_cli("audit", "verify", str(out), "--pubkey", f"{key}.pub")
    assert honest.returncode == 0, honest.stdout

    nb = json.loads(out.read_text())
    assert nb["cells"][0]["cell_type"] == "raw"
    nb["cells"][0]["metadata"]["raw_mimetype"] = "text/html"
    out.write_text(json.dumps(nb))
    result = glsandbox_cli("audit", "verify", str(out), "--pubkey", f"{key}.pub")
    assert result.returncode != 0, result.stdout
    assert "cell 1 (not executed): raw format (was 'text/latex', now 'text/html') changed" in result.stdout

    del nb["cells"][0]["metadata"]["raw_mimetype"]  # empty is rendered as HTML too
    out.write_text(json.dumps(nb))
    assert glsandbox_cli("audit", "verify", str(out), "--pubkey", f"{key}.pub").returncode != 0


@pytest.mark.parametrize("fmt", [2, 3])
def test_an_older_format_seal_is_checked_as_it_was_made(tmp_path: Path, fmt: int) -> None:
    """A notebook sealed (and signed) before the raw format was covered (2), or before outputs format 2
    (3: review 11), still verifies."""
    from glsandbox_kernel.audit.keys import signer_from_bytes
    from glsandbox_kernel.notebook.seal import copy_seal_to_cells, manifest, seal_digest

    need("namespace")
    pytest.importorskip("cryptography")
    key = tmp_path / "signing.key"
    assert glsandbox_cli("keygen", str(key)).returncode == 0
    _notebook(tmp_path / "nb.ipynb")
    out = tmp_path / "out.ipynb"
    ran = glsandbox_cli("run", str(tmp_path / "nb.ipynb"), "-o", str(out), "--sign-key", str(key))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    nb = json.loads(out.read_text())
    nb_meta = nb["metadata"]["glsandbox"]
    assert nb_meta["manifest"]["format"] >= 3 and nb_meta["manifest"]["cells"][0]["format"] == "text/latex"
    # re-seal the way a format-2 (no raw format in the manifest) or 3 glsandbox did, with the same key
    nb_meta["manifest"] = manifest(nb, fmt)
    assert nb_meta["manifest"]["format"] == fmt
    assert ("format" in nb_meta["manifest"]["cells"][0]) == (fmt == 3)
    nb_meta.pop("seal")
    digest = seal_digest(nb_meta)
    signer = signer_from_bytes(key.read_bytes())
    nb_meta["seal"] = {"digest": digest, "scheme": signer.scheme, "signature": signer.sign(digest.encode("ascii"))}
    copy_seal_to_cells(nb, nb_meta["seal"])
    out.write_text(json.dumps(nb))
    result = glsandbox_cli("audit", "verify", str(out), "--pubkey", f"{key}.pub")
    assert result.returncode == 0, result.stdout
