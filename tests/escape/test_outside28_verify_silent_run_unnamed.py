"""Outside review 28: code run silently between two cells changes the results, and ``--strict`` says nothing.

Severity: medium. Since review 26 a cell record whose execute_request was ``silent`` (``extra.silent``)
may stand in the next cell's ``preceding`` (variable-inspector extensions send such requests), and
``misplaced_cell_records`` skips it. The record holds only the code's hash, not the code. So an analyst
who wants a result the notebook's cells do not produce sends the change as a silent execute_request
(``n = 1000`` between cells 1 and 2, any client on the kernel's connection file can); the saved notebook
shows cells 1-3 with outputs computed from the hidden state, and ``glsandbox audit verify --strict``
("one clean top-to-bottom run") passes without a word: not a problem, not a warning, not a note that
code outside any cell ran between them. Deleting a cell after running it is named; running it silently
instead is the same thing, unnamed.

Judged from the host: verify's stdout/stderr of the saved notebook, ``--strict``.

Suggested fix: a silent run whose code is not a known inspection (or any silent run that changed the
namespace or wrote files) is at least a warning naming where it ran, and a problem under ``--strict``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from ..jupyter.test_interactive import SOURCES, Frontend
from ..jupyter_fixtures import glsandbox_kernelspec
from .test_outside26_verify_superseded_moved import _run_silent

__all__ = ["glsandbox_kernelspec"]

pytestmark = pytest.mark.timeout(300)


def test_hidden_run_between_cells_is_named_by_strict_verify(glsandbox_kernelspec: str, tmp_path: Any) -> None:
    ui = Frontend("glsandbox")
    try:
        cells = [ui.add(s) for s in SOURCES]
        ui.run(cells[0])
        _run_silent(ui, "n = 1000")  # hidden: no cell holds this code
        for index in cells[1:]:
            ui.run(index)
        nb = json.loads(json.dumps(ui.nb))
    finally:
        ui.close()
    shown = "".join("".join(o.get("text", "")) for o in nb["cells"][2]["outputs"] if o["output_type"] == "stream")
    assert "third sees 1010" in shown, f"set-up: the hidden run changed n: {shown!r}"
    path = tmp_path / "analysis.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    result = glsandbox_cli("audit", "verify", str(path), "--strict")
    said = (result.stdout + result.stderr).replace(str(path), "NOTEBOOK")  # the path names the test
    assert result.returncode != 0 or "silent" in said.lower(), (
        "cells 1-3 show n = 1 + 10 = 1010 (a value no cell computes: hidden code ran between cells 1 and 2), "
        f"and verify --strict passed without naming it:\n{said}"
    )
