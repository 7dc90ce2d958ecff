"""Outside review (7th): a cell with the documented per-cell limits always fails ``audit verify``.

Plain use: the kernel's cells may start with ``%%sandbox --timeout S --memory
SIZE --cpu-time S`` (``kernel/limits.py``). The kernel strips that line
(``split_cell_options``) and runs (and records the hash of) the body only;
the verifier hashes the notebook cell's whole source. Every such cell is
reported "source edited after it ran" on an untouched notebook, so an auditor
learns to ignore the one verdict that says the code shown is not the code run.

Measured here (root, namespace): ``glsandbox run nb.ipynb`` of a cell
``%%sandbox --memory 200M`` / ``print(1)``, nothing edited: ``audit: FAILED:
1 problem(s) ... cell 1 (In [1]): source edited after it ran``.

Judged from the host: ``glsandbox audit verify`` of the executed, untouched
notebook passes.

Fix (suggested): record the hash of the full cell text (the options line is
part of what ran: it set the cell's limits), or record the stripped line too
and let the verifier strip the same line the kernel did.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need, write_notebook

pytestmark = pytest.mark.timeout(300)


def test_a_cell_with_per_cell_limits_verifies(tmp_path: Path) -> None:
    need("namespace")
    write_notebook(tmp_path / "nb.ipynb", "%%sandbox --memory 200M\nprint(1)", "print(2)")
    out = tmp_path / "out.ipynb"
    res = glsandbox_cli("run", str(tmp_path / "nb.ipynb"), "-o", str(out))
    assert out.exists(), res.stdout + res.stderr
    verify = glsandbox_cli("audit", "verify", str(out))
    assert verify.returncode == 0 and "edited" not in verify.stdout, (
        f"an untouched notebook whose cell uses '%%sandbox --memory 200M' fails verification:\n{verify.stdout}"
    )
