"""Outside review (16th): what the ``test_outside15_*`` reproducers share (no tests here).

``executed(tmp_path, kernel, *cells)`` runs a notebook of code cells with nbclient (what
papermill and ``jupyter nbconvert --execute`` do) in a real ``kernel`` (``glsandbox`` or a
stock ``python3`` with the magic) and returns its saved JSON; ``verify(nb, tmp_path, *args)``
writes a notebook and runs ``glsandbox audit verify`` on it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need


def executed(tmp_path: Path, kernel: str, *cells: str) -> dict[str, Any]:
    """The saved JSON of a notebook of ``cells`` run top to bottom by nbclient in ``kernel``."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    need("namespace")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell("# Report"))
    nb.cells.extend(nbformat.v4.new_code_cell(cell) for cell in cells)
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return json.loads(nbformat.writes(nb))


def verify(
    nb: dict[str, Any], tmp_path: Path, *args: str, name: str = "tampered.ipynb"
) -> subprocess.CompletedProcess[str]:
    """``glsandbox audit verify`` of ``nb`` written to ``tmp_path/name``."""
    path = tmp_path / name
    path.write_text(json.dumps(nb), encoding="utf-8")
    return glsandbox_cli("audit", "verify", str(path), *args)


def code_cell(nb: dict[str, Any], n: int) -> dict[str, Any]:
    """The ``n``-th code cell (0-based) of ``nb``."""
    return [c for c in nb["cells"] if c.get("cell_type") == "code"][n]


def record_of(cell: dict[str, Any]) -> dict[str, Any]:
    """The audit record in a code cell's audit output."""
    for output in reversed(cell.get("outputs") or []):
        payload = (output.get("data") or {}).get("application/vnd.glsandbox.audit+json")
        if isinstance(payload, dict):
            return dict(payload["record"])
    raise AssertionError(f"no audit output in {cell.get('source')!r}")
