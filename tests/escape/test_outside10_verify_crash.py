"""Outside review (11th): ``glsandbox audit verify`` dies with a traceback on a damaged notebook.

``verify_notebook`` promises "Never raises for a damaged notebook: everything
wrong becomes a problem". Three one-field edits of a signed ``glsandbox run``
notebook, each still valid JSON that nbformat-unaware tools keep, make the
CLI crash instead of printing ``FAILED`` and naming the damage:

- a markdown cell's ``source`` list holding a number (``["# Report\\n", 5]``):
  ``TypeError`` in ``notebook/verify.py:_source`` (``"".join``);
- a code cell's ``outputs`` as an object instead of a list: ``AttributeError``
  (``find_audit_output`` / ``_canonical`` iterate the keys, strings);
- a string inserted into a code cell's ``outputs`` list: ``AttributeError``
  in ``evidence.streams_as_shown`` (``output.get``).

Measured: stderr holds a Python traceback and stdout no verdict. The exit
status is 1 (Python's for an uncaught exception), so a script reading only
the status still fails the notebook, but the auditor gets no named problem,
and ``glsandbox report``/``attest`` (which verify first) fail the same way.
Severity: low. Fix: in verify, coerce ``source`` items with ``str`` (or name
a non-string source as a problem), and treat non-list ``outputs`` and
non-object outputs as problems of that cell (``isinstance`` guards in
``_cell_evidence``, ``streams_as_shown``, ``find_audit_output``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from .test_outside10_common import code_cell, save, signed_notebook, verify

pytestmark = pytest.mark.timeout(500)


def test_damaged_notebooks_get_a_verdict_not_a_traceback(tmp_path: Path) -> None:
    nb, pub = signed_notebook(tmp_path)
    damaged = []
    a = copy.deepcopy(nb)
    a["cells"][0]["source"] = ["# Report\n", 5]
    damaged.append(("source list with a number", a))
    b = copy.deepcopy(nb)
    code_cell(b, 1)["outputs"] = {"image/png": "x"}
    damaged.append(("outputs as an object", b))
    c = copy.deepcopy(nb)
    code_cell(c, 1)["outputs"].insert(0, "x")
    damaged.append(("a string among the outputs", c))
    crashed = []
    for index, (what, notebook) in enumerate(damaged):
        result = verify(save(notebook, tmp_path / f"damaged{index}.ipynb"), pub)
        if "Traceback" in result.stderr or not result.stdout.startswith("FAILED"):
            crashed.append(f"{what}: rc={result.returncode} {result.stderr.strip().splitlines()[-1:]}")
    assert not crashed, "verify crashed instead of naming the damage:\n" + "\n".join(crashed)
