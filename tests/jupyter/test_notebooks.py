"""Every notebook in notebooks/ executes with nbclient, in the kernel its metadata names."""

from __future__ import annotations

import glob
import os
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from ..conftest import ROOT
from ..jupyter_fixtures import glsandbox_kernelspec

__all__ = ["glsandbox_kernelspec"]

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def _outputs(nb: Any, output_type: str, *, expected_errors: bool = False) -> list[dict[str, Any]]:
    """Outputs of one type; cells tagged ``raises-exception`` only when ``expected_errors``."""
    return [
        o
        for cell in nb.cells
        if cell.cell_type == "code" and ("raises-exception" in cell.metadata.get("tags", [])) == expected_errors
        for o in cell.outputs
        if o.output_type == output_type
    ]


def test_there_are_notebooks() -> None:
    names = {os.path.basename(p) for p in NOTEBOOKS}
    assert {"emissions_demo.ipynb", "magic_demo.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_executes(glsandbox_kernelspec: str, tmp_path: Any, path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    kernel = nb.metadata["kernelspec"]["name"]
    client = NotebookClient(
        nb, timeout=120, startup_timeout=60, kernel_name=kernel, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    assert not _outputs(nb, "error")
    nbformat.validate(nb)
    if os.path.basename(path) == "emissions_demo.ipynb":
        assert kernel == "glsandbox"
        charts = [o for o in _outputs(nb, "display_data") if "image/png" in o.data and "glsandbox" not in o.metadata]
        assert charts, "the matplotlib chart is missing"  # (not the glsandbox monitor's own chart)
        tables = [o for o in _outputs(nb, "execute_result") if "Scope 1" in o.data.get("text/html", "")]
        assert tables, "the summary table is missing"
        text = "".join(o.text for o in _outputs(nb, "stream"))
        assert "Total Q1 emissions" in text
    if os.path.basename(path) == "magic_demo.ipynb":
        assert kernel == "python3"
        text = "".join(o.text for o in _outputs(nb, "stream"))
        assert "computed 4 lines in the sandbox" in text and "largest: freight_tonne_km" in text
        assert _outputs(nb, "error", expected_errors=True), "connecting out of the strict sandbox must fail"
