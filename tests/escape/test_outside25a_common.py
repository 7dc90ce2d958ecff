"""Outside review 25a: what the ``test_outside25a_*`` reproducers share (no tests here).

``signed_run(tmp_path, *cells)`` runs a small emissions notebook (a CSV beside it, a markdown
cell, then ``cells``) with ``glsandbox run --sign-key`` in a real sandbox kernel and returns the
sealed, Ed25519-signed notebook's JSON and the public key's path; ``verify_file`` runs ``glsandbox
audit verify --pubkey`` on a notebook file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need

CSV = "source,activity,factor\ndiesel,1200,2.68\nelectricity,54000,0.233\n"
CELLS = (
    "import csv\nrows = list(csv.DictReader(open('activity.csv')))\nlen(rows)",
    "total = sum(float(r['activity']) * float(r['factor']) for r in rows) / 1000\nprint(f'total {total:.2f} tCO2e')",
)


def signed_run(tmp_path: Path, *cells: str) -> tuple[dict[str, Any], Path]:
    """``(notebook JSON, public key)`` of an honest ``glsandbox run --sign-key`` of ``cells``."""
    nbformat = pytest.importorskip("nbformat")
    need("namespace")
    project = tmp_path / "emissions"
    project.mkdir()
    (project / "activity.csv").write_text(CSV)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell("# Emissions 2026"))
    nb.cells.extend(nbformat.v4.new_code_cell(c) for c in (cells or CELLS))
    nbformat.write(nb, str(project / "emissions.ipynb"))
    key = tmp_path / "signing.key"
    made = glsandbox_cli("keygen", str(key))
    assert made.returncode == 0, made.stdout + made.stderr
    out = project / "emissions.glsandbox.ipynb"
    ran = glsandbox_cli("run", str(project / "emissions.ipynb"), "-o", str(out), "--sign-key", str(key))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    pub = Path(str(key) + ".pub")
    honest = verify_file(out, pub)
    assert honest.returncode == 0, honest.stdout + honest.stderr
    return json.loads(out.read_text()), pub


def verify_file(path: Path, pub: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``glsandbox audit verify PATH --pubkey PUB [args]``."""
    return glsandbox_cli("audit", "verify", str(path), "--pubkey", str(pub), *args)


def code_cells(nb: dict[str, Any]) -> list[dict[str, Any]]:
    """The code cells of ``nb``, in order."""
    return [c for c in nb["cells"] if c.get("cell_type") == "code"]


def audit_payload(cell: dict[str, Any]) -> dict[str, Any]:
    """The payload of a code cell's audit output (``record``, ``preceding`` ...)."""
    for output in reversed(cell.get("outputs") or []):
        payload = (output.get("data") or {}).get("application/vnd.glsandbox.audit+json")
        if isinstance(payload, dict):
            return payload
    raise AssertionError(f"no audit output in {cell.get('source')!r}")
