"""Outside review: ``audit verify --strict`` passed a notebook showing ``Out[7]`` beside ``In [1]``.

Done: a real signed ``glsandbox run`` of two cells (the first ends in an expression, so it has
an ``execute_result``), verified ``--strict`` (passes); then only prompt numbers are edited:

- the first cell's ``execute_result`` says ``Out[7]`` while the cell says ``In [1]``;
- the first cell is made ``In [5]`` throughout (prompt, result, and the number its audit line
  shows), above the second cell's ``In [2]``, though the records say it ran first (the seal
  sees the audit line's edit; a notebook saved without a seal would not).

Verify passed both under ``--strict``: no hash covers prompt numbers and no record holds one
(``VOLATILE_FIELDS``), so nothing compared them; a reader takes them as the order of execution.
Expected: a warning naming the cell, and ``--strict`` fails naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glsandbox_kernel.notebook.evidence import AUDIT_MIME

from .test_outside25a_common import code_cells, signed_run, verify_file

pytestmark = pytest.mark.timeout(600)


def _result(cell: dict) -> dict:
    return next(o for o in cell["outputs"] if o["output_type"] == "execute_result")


def test_strict_names_out_7_beside_in_1_and_prompts_out_of_order(tmp_path: Path) -> None:
    nb, pub = signed_run(tmp_path)
    honest = verify_file(tmp_path / "emissions" / "emissions.glsandbox.ipynb", pub, "--strict")
    assert honest.returncode == 0, honest.stdout

    first = code_cells(nb)[0]
    assert first["execution_count"] == 1 and _result(first)["execution_count"] == 1
    _result(first)["execution_count"] = 7
    path = tmp_path / "out7.ipynb"
    path.write_text(json.dumps(nb))
    lax = verify_file(path, pub)
    assert lax.returncode == 0 and "cell 2 (In [1]): its result shows Out[7]" in lax.stdout, lax.stdout
    strict = verify_file(path, pub, "--strict")
    assert strict.returncode == 1, strict.stdout
    assert "--strict: prompt numbers were changed after the cells ran: cell 2 (In [1])" in strict.stdout

    # In [5] everywhere the first cell shows a number (its audit line too), above In [2]
    first["execution_count"] = _result(first)["execution_count"] = 5
    audit = next(o for o in first["outputs"] if AUDIT_MIME in (o.get("data") or {}))
    line = "".join(audit["data"]["text/plain"])
    assert line.startswith("glsandbox audit: cell 1 ·"), line
    for mime in ("text/plain", "text/html"):
        audit["data"][mime] = "".join(audit["data"][mime]).replace("cell 1 ·", "cell 5 ·", 1)
    path.write_text(json.dumps(nb))
    strict = verify_file(path, pub, "--strict")
    assert strict.returncode == 1, strict.stdout
    assert "cell 3 (In [2]): its prompt number is not above that of cell 2 (In [5])" in strict.stdout
    assert "prompt numbers were changed after the cells ran: cell 3 (In [2])" in strict.stdout
