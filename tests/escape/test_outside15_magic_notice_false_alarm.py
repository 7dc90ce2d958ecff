"""Outside review (16th, new user + auditor): an honest LENIENT ``%%sandbox`` run fails verify.

Done: a stock ``python3`` notebook, run top to bottom by nbclient (what papermill does) in its
own folder: ``%load_ext glsandbox_kernel``, then ``%%sandbox lenient`` / ``print(1)``. Nothing is
edited afterwards. The magic prints a host notice to stderr before it runs the cell
("glsandbox: the project folder ... is shown read-only (cells write to its sandbox-output
folder): this kernel imports Python code from it ..."; ``magics/magic.py`` prints
``session.path_notice`` and the registry's notice with ``print(..., file=sys.stderr)``). The
notice is a cell output, but no record lists it.

Verify said: ``FAILED ... cell 3 (In [2]): output 1 added after it ran (the record lists every
output)`` (exit 1) on the untouched notebook. (``%%sandbox --no lenient``, an argparse prefix
of ``--no-monitor`` the magic accepts, adds a second false alarm: "its %%sandbox line says
level moderate but it ran at level lenient (the magic line was edited)": ``magic_level``
takes the word after an unknown option for its value.)

Expected: an honest run verifies. Severity: medium (a false alarm on the documented papermill +
magic path: a user cannot hand over honest evidence, and an auditor learns to shrug at
"output added").

Fix (suggested): the magic emits its host notices as kernel-marked outputs that the record lists
(``OSSandbox.mark_output``, as the kernel does for its notices), or after the audit output with
their hashes in the record; ``notebook/checks.py:magic_level`` resolves option prefixes with the
magic's own parser. Files: ``magics/magic.py``, ``magics/display.py``, ``notebook/checks.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_outside15_common import executed, verify

pytestmark = pytest.mark.timeout(600)


def test_an_honest_lenient_magic_run_verifies(tmp_path: Path) -> None:
    nb = executed(tmp_path, "python3", "%load_ext glsandbox_kernel", "%%sandbox lenient\nprint(1)")
    got = verify(nb, tmp_path, name="honest.ipynb")
    assert got.returncode == 0, f"nothing was edited and verify said:\n{got.stdout}"
