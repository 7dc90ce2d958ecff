"""Outside review (16th, auditor): a changed prompt number is reported as a rewritten audit line.

Done: a real signed ``glsandbox run`` (verifies ``--strict``); the tamperer (or a tool that
renumbers prompts) changes the first code cell's ``execution_count`` from 1 to 7 and leaves
every output, the audit output included, byte for byte as the run wrote it.

Verify said: ``cell 2 (In [7]): its visible audit line was rewritten: it shows 'glsandbox
audit: cell 1 · …', the record says 'glsandbox audit: cell 7 · …'``. Both halves are wrong:
the audit line is untouched, and the record never says "cell 7" (it holds no prompt number;
the 7 is the edited one). ``VOLATILE_FIELDS`` lists ``cell.execution_count`` as not covered,
so an auditor reading that list expects a pass or a note, and reading the message looks for
an edit of the audit output that never happened.

Expected: verify names what changed: "cell 2: its prompt number In [7] is not the one its
audit line was made with (cell 1): the execution count was changed" (a problem or a warning,
as the project decides, in line with ``VOLATILE_FIELDS``). Severity: low (detected, but it
names the wrong thing, which sends an auditor after the wrong edit).

Fix (suggested): ``notebook/checks.py:_check_audit_output`` also tries the count the line
itself shows (parse "cell N" or re-derive for N from the record's data) and, when the bundle
matches for another count, reports the execution count, not the line; update the wording of
``VOLATILE_FIELDS`` in ``notebook/evidence.py`` to match.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_outside10_common import code_cell, save, signed_notebook, verify

pytestmark = pytest.mark.timeout(600)


def test_a_renumbered_prompt_is_not_blamed_on_the_audit_line(tmp_path: Path) -> None:
    nb, pub = signed_notebook(tmp_path)
    cell = code_cell(nb, 0)
    assert cell["execution_count"] == 1
    cell["execution_count"] = 7
    got = verify(save(nb, tmp_path / "renumbered.ipynb"), pub)
    assert "visible audit line was rewritten" not in got.stdout, got.stdout
    assert "the record says 'glsandbox audit: cell 7" not in got.stdout, got.stdout
