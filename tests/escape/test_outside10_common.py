"""Outside review (11th): what the ``test_outside10_*`` reproducers share (no tests here).

``signed_notebook(tmp_path)`` is a real ``glsandbox run --sign-key`` of a small report: a
markdown verdict, a cell printing a result and a stderr warning, a cell showing a PNG and
a JSON output. ``verify(path, pub)`` runs ``glsandbox audit verify --pubkey --strict``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from ..conftest import glsandbox_cli
from .test_outside5_common import need, signed_run

WARNING = "WARNING: data leak detected"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
BIG = 2**53 + 1


def _write(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell("# Report\nAll checks **passed**."))
    nb.cells.append(
        nbformat.v4.new_code_cell(f"import sys\nprint('accuracy: 0.51')\nprint({WARNING!r}, file=sys.stderr)")
    )
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import base64\nfrom IPython.display import display, Image, JSON\n"
            f"display(Image(base64.b64decode({PNG!r})))\ndisplay(JSON({{'n': {BIG}}}))"
        )
    )
    nbformat.write(nb, str(path))


def signed_notebook(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """``(notebook JSON, public key path)`` of a real signed ``glsandbox run`` that verifies --strict."""
    need("namespace")
    out, key = signed_run(tmp_path, _write)
    pub = Path(f"{key}.pub")
    honest = verify(out, pub)
    assert honest.returncode == 0, honest.stdout + honest.stderr
    return json.loads(out.read_text(encoding="utf-8")), pub


def code_cell(nb: dict[str, Any], n: int) -> dict[str, Any]:
    """The ``n``-th code cell (0-based) of ``nb``."""
    return [c for c in nb["cells"] if c.get("cell_type") == "code"][n]


def save(nb: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def verify(path: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    return glsandbox_cli("audit", "verify", str(path), "--pubkey", str(pub), "--strict")
