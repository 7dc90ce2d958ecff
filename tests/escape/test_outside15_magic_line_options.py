"""Outside review (16th, auditor): a ``%%sandbox`` line's options are not covered by the record.

Done: a stock ``python3`` notebook (run by nbclient, as papermill runs it) with the magic:
``%%sandbox moderate --network 127.0.0.1:9 --timeout 30`` then ``print('ran')``. The record
(``extra.source_hash``) covers only the body; ``magic_level`` checks only the level word. The
tamperer rewrites the line to ``%%sandbox moderate --network none --timeout 30`` (the cell
now claims it had no network) or ``%%sandbox moderate --isolation vm ...`` (claims a microVM;
the record says namespace).

Verify said: ``OK: ... chain intact, sources and outputs match`` (exit 0) for both.

Expected: the visible source is what the reader judges the sandbox by; an edit of any option
(network, isolation, timeout, memory, --in/--out, --project, --ro) must fail verify, e.g.
"cell 3: its %%sandbox line was edited after it ran". Severity: medium (the evidence says
"sources match" while the shown confinement was rewritten; no key needed, no seal in play).

Fix (suggested): the magic puts the hash of the whole cell (magic line included) in the
record, e.g. ``extra.magic_line_hash`` (``magics/magic.py`` where it calls ``run_cell``), and
``notebook/checks.py:source_hashes`` stops accepting the body-only hash when the record
carries it; or the verifier compares the parsed options with the record's ``isolation_type``
and session config (``notebook/verify.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_outside15_common import code_cell, executed, verify

pytestmark = pytest.mark.timeout(600)

LINE = "%%sandbox moderate --network 127.0.0.1:9 --timeout 30\n"


@pytest.mark.parametrize(
    "edited",
    [
        "%%sandbox moderate --network none --timeout 30\n",
        "%%sandbox moderate --isolation vm --network 127.0.0.1:9 --timeout 30\n",
    ],
    ids=["network", "isolation"],
)
def test_an_edited_magic_line_fails_verify(tmp_path: Path, edited: str) -> None:
    nb = executed(tmp_path, "python3", "%load_ext glsandbox_kernel", LINE + "print('ran')")
    honest = verify(nb, tmp_path, name="honest.ipynb")
    assert honest.returncode == 0, honest.stdout + honest.stderr
    cell = code_cell(nb, 1)
    cell["source"] = edited + "print('ran')"
    got = verify(nb, tmp_path)
    assert got.returncode != 0, f"the %%sandbox line was rewritten to {edited!r} and verify said:\n{got.stdout}"
