"""Outside review (16th, auditor): a ``%%sandbox`` line prepended to a glsandbox-kernel cell passes.

Done: a ``glsandbox``-kernel notebook run by nbclient (as papermill runs it; unsealed, no key):
a cell ``print('a')`` with no options line. The tamperer prepends
``%%sandbox <its level> --network none --timeout 1 --memory 10M`` to it, so the cell now claims
limits and a network policy it never ran under.

Verify said: ``OK: ... chain intact, sources and outputs match`` (exit 0).

Why: ``notebook/checks.py:source_hashes`` accepts, for any source starting with ``%%sandbox``,
the hash of the body without the line (the magic's form, meant for an IPython kernel), even in
a notebook whose kernelspec is ``glsandbox``: there the kernel hashes the line as a comment
(``commented_options_line``), so the body-only hash can only come from a cell that had no line.

Expected: verify fails ("source edited after it ran"). Severity: medium (the limits shown with
a cell are rewritten under a green verify; only a seal, absent here, would catch it).

Fix (suggested): ``source_hashes`` takes the kernel kind: in a glsandbox-kernel notebook
(``verify.py``'s ``magic_only`` false) a ``%%sandbox`` cell matches only
``commented_options_line(source)`` (and the plain source); body-only hashes only for magic cells
of another kernel. Files: ``notebook/checks.py``, ``notebook/verify.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_outside15_common import code_cell, executed, record_of, verify

pytestmark = pytest.mark.timeout(600)


def test_a_prepended_options_line_fails_verify(tmp_path: Path) -> None:
    nb = executed(tmp_path, "glsandbox", "print('a')")
    honest = verify(nb, tmp_path, name="honest.ipynb")
    assert honest.returncode == 0, honest.stdout + honest.stderr
    cell = code_cell(nb, 0)
    level = record_of(cell)["security_level"]
    cell["source"] = f"%%sandbox {level} --network none --timeout 1 --memory 10M\n" + "".join(cell["source"])
    got = verify(nb, tmp_path)
    assert got.returncode != 0, f"a %%sandbox line was prepended and verify said:\n{got.stdout}"
