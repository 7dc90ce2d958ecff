"""Outside review (7th): the untrusted notebook's ``%%sandbox --timeout N`` lifts the run's wall-clock limit.

Attack: a cell whose first line is ``%%sandbox --timeout 100000`` runs with
that limit instead of the kernel's ``timeout`` (``glsandbox run --timeout``,
the kernel option, the level's preset): ``kernel/kernel.py`` replaces the
session's ``execution_timeout`` with the cell's value. ``--memory`` is capped
at the session's limit (with a notice); ``--timeout`` is not capped at all.
The cell's text is the notebook's, i.e. the untrusted party's: a CI job
running a downloaded notebook with ``--timeout 3`` waits as long as the
notebook likes (a sleep or blocking read uses no CPU, so RLIMIT_CPU never ends it).

Measured here (root, namespace): ``glsandbox run nb.ipynb --timeout 3``, cell
``%%sandbox --timeout 100000`` + ``time.sleep(9)``: ``cell 1: ok in 9.04 s``.

Judged from the host: the executed notebook holds no output of the code after
the sleep (the cell was stopped at the run's 3 s).

Fix (suggested): take ``min(cell timeout, session timeout)`` where the session
has one, with a notice as for ``--memory``; the same for ``--cpu-time``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need, write_notebook

pytestmark = pytest.mark.timeout(300)

CELL = "%%sandbox --timeout 100000\nimport time\ntime.sleep(8)\nprint('still running after', 8, 's')"


def test_a_cell_cannot_lift_the_runs_timeout(tmp_path: Path) -> None:
    import nbformat

    need("namespace")
    write_notebook(tmp_path / "nb.ipynb", CELL)
    out = tmp_path / "out.ipynb"
    res = glsandbox_cli("run", str(tmp_path / "nb.ipynb"), "--timeout", "3", "-o", str(out))
    assert out.exists(), res.stdout + res.stderr
    text = "".join(o.get("text", "") for o in nbformat.read(str(out), as_version=4).cells[0].outputs)
    assert "still running after" not in text, (
        f"glsandbox run --timeout 3: the notebook's own '%%sandbox --timeout 100000' line kept its cell "
        f"running 8 s: {res.stdout.strip().splitlines()[:2]}"
    )
