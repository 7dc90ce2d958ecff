"""Outside review: a signed, sealed ``glsandbox run`` notebook downgraded to an unsealed one.

Attack: the auditor holds the key and runs ``glsandbox audit verify --key``.
The tamperer removes ``notebook.metadata["glsandbox"]`` *and* every cell's
``metadata["glsandbox"]`` (cell metadata other than ``glsandbox`` is volatile,
and the copies of the seal live only there), then deletes the last code cell,
moves cells, edits a markdown cell, or renames the kernelspec to ``python3``
and inserts a cell with a fabricated result (records of the glsandbox
kernel's cells in a "python3" notebook go unquestioned). The signed per-cell records are left
untouched, so every record signature still checks; what is gone is the seal
that covered the cell count, the order and the markdown. Verify then treats
the notebook like an interactive one that was never sealed (a note, not a
problem) and passes it.

Secure behaviour: a notebook whose signed records say it was run (and sealed)
by ``glsandbox run`` must not verify without its seal when a key is given;
at least, a truncated chain (the last cell's record dropped) must be seen.
Fix (suggested): let the signed chain commit to the seal, e.g. a signed
"run" record (or a field of the session's records) that says the notebook is
sealed and how many records/cells it had, checked in ``notebook/verify.py``
/ ``notebook/seal.py:check_seal``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import nbformat
import pytest

from ..unit.test_tamper import _glsandbox

pytestmark = pytest.mark.timeout(600)

KEY = b"outside-review-hmac-key-0123456789"

CELLS = [
    ("markdown", "# Result\nThe approved budget is 100."),
    ("code", "x = 6 * 7\nprint('x is', x)"),
    ("code", "print('middle cell')"),
    ("code", "print('VIOLATION: the last cell found something')"),
]


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("outside-audit")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    for kind, source in CELLS:
        nb.cells.append(
            nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        )
    src = base / "n.ipynb"
    nbformat.write(nb, str(src))
    key = base / "hmac.key"
    key.write_bytes(KEY)
    out = base / "n.out.ipynb"
    res = _glsandbox("run", str(src), "-o", str(out), "--key", str(key))
    assert res.returncode == 0, res.stdout + res.stderr
    ok = _glsandbox("audit", "verify", str(out), "--key", str(key))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    return {"nb": nbformat.read(str(out), as_version=4), "key": str(key), "dir": base}


def _strip_seal(nb: Any) -> None:
    """Remove the seal everywhere it lives: notebook metadata and each cell's copy."""
    nb.metadata.pop("glsandbox", None)
    for cell in nb.cells:
        cell.metadata.pop("glsandbox", None)


def _verify_tampered(sealed: dict[str, Any], edit: Callable[[Any], None], name: str) -> str:
    nb = copy.deepcopy(sealed["nb"])
    _strip_seal(nb)
    edit(nb)
    path = sealed["dir"] / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    res = _glsandbox("audit", "verify", str(path), "--key", sealed["key"])
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 1, f"{name}: the tampered notebook verified with the key:\n{res.stdout}{res.stderr}"
    return res.stdout


def _code_cells(nb: Any) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def test_stripped_seal_hides_the_deleted_last_cell(sealed: dict[str, Any]) -> None:
    """Drop the last code cell (its signed record goes with it) after removing the seal."""

    def edit(nb: Any) -> None:
        del nb.cells[_code_cells(nb)[-1]]

    _verify_tampered(sealed, edit, "stripped-truncated")


def test_stripped_seal_hides_reordered_cells(sealed: dict[str, Any]) -> None:
    """Swap two code cells (each keeps its own signed record) after removing the seal."""

    def edit(nb: Any) -> None:
        a, b = _code_cells(nb)[-2:]
        nb.cells[a], nb.cells[b] = nb.cells[b], nb.cells[a]

    _verify_tampered(sealed, edit, "stripped-reordered")


def test_stripped_seal_hides_an_edited_markdown_cell(sealed: dict[str, Any]) -> None:
    """Rewrite the markdown claim the seal covered, after removing the seal."""

    def edit(nb: Any) -> None:
        nb.cells[0].source = "# Result\nThe approved budget is 1000000."

    _verify_tampered(sealed, edit, "stripped-markdown")


def test_stripped_seal_and_kernelspec_let_a_fake_cell_in(sealed: dict[str, Any]) -> None:
    """Strip the seal, rename the kernelspec to ``python3`` (then only ``%%sandbox`` cells are evidence,
    ``verify.py``'s ``magic_only``), and insert a code cell with a fabricated result: it is reported as
    a cell that "ran outside any sandbox" in a note, and the notebook verifies with the key."""

    def edit(nb: Any) -> None:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        fake = nbformat.v4.new_code_cell("approved = check_budget()\nprint(approved)")
        fake.execution_count = 3
        fake.outputs = [nbformat.v4.new_output("stream", name="stdout", text="budget approved: True\n")]
        nb.cells.insert(_code_cells(nb)[-1] + 1, fake)

    _verify_tampered(sealed, edit, "stripped-kernelspec-fake-cell")
