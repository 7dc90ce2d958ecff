"""Cell metadata no record covers can hide covered content: verify names it (review 9's low finding).

A tamperer tags the cell whose audit output shows a violation ``remove-output``
(nbconvert's TagRemovePreprocessor, Jupyter Book) or folds it
(``jupyter.outputs_hidden``): the notebook still verifies, but an export or a
view no longer shows the evidence. Judged from the host: verify warns about
both, and ``--strict`` fails on metadata that drops content from exports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need

pytestmark = pytest.mark.timeout(300)


def test_metadata_that_hides_covered_outputs_is_named(tmp_path: Path) -> None:
    need("namespace")
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell("print('accuracy 0.51')"))
    nb.cells.append(nbformat.v4.new_code_cell("print('second')"))
    nbformat.write(nb, str(tmp_path / "nb.ipynb"))
    out = tmp_path / "out.ipynb"
    ran = glsandbox_cli("run", str(tmp_path / "nb.ipynb"), "-o", str(out))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    honest = glsandbox_cli("audit", "verify", str(out), "--strict")
    assert honest.returncode == 0 and "metadata (not covered)" not in honest.stdout, honest.stdout

    data = json.loads(out.read_text())
    data["cells"][0]["metadata"]["tags"] = ["remove-output"]
    data["cells"][1]["metadata"]["jupyter"] = {"outputs_hidden": True}
    out.write_text(json.dumps(data))
    plain = glsandbox_cli("audit", "verify", str(out))
    lines = plain.stdout.splitlines()[1:]  # the first line names the file
    assert any("cell 1" in line and "drops covered content" in line for line in lines), plain.stdout
    assert any("cell 2" in line and "folds" in line for line in lines), plain.stdout
    strict = glsandbox_cli("audit", "verify", str(out), "--strict")
    assert strict.returncode != 0 and "drops covered content" in strict.stdout, strict.stdout
