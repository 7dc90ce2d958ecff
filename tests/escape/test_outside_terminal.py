"""Outside review: ``glsandbox run`` prints sandbox-chosen error text raw to the operator's terminal.

Attack: a cell raises an exception whose message holds terminal control
sequences. ``notebook/run.py`` puts ``ename: evalue`` of the cell's first
error into the progress line and the "failed:" summary line unfiltered, so
the sandbox writes escape sequences to the host's terminal: ``\\r`` +
``ESC[2K`` erase the ``ERROR`` line and print a fake ``ok`` in its place,
``ESC]52;c;...BEL`` (OSC 52) puts text of its choice on the operator's
clipboard in terminals that allow it, ``ESC]0;...`` retitles the window.

Judged from the host: the CLI's stdout and stderr carry no C0/C1 control
character other than newline and tab, whatever the sandbox's error says.

Fix (suggested): one ``printable()`` helper for every sandbox-derived string
the CLIs print (``notebook/run.py`` progress/summary, ``notebook/cluster.py``,
``cli.py`` exec's exception line): escape C0/C1 controls and DEL
(``\\x1b`` -> ``\\\\x1b``), as ``repr`` does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import nbformat
import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.timeout(300)

PAYLOAD = "\\r\\x1b[2K[1/1] cell 1: ok in 0.1 s\\x1b]52;c;ZWNobyBwd25lZA==\\x07\\x1b]0;all good\\x07"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_run_output_has_no_sandbox_control_characters(tmp_path: Any) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(f'raise ValueError("{PAYLOAD}")'))
    src = tmp_path / "t.ipynb"
    nbformat.write(nb, str(src))
    env = {k: v for k, v in os.environ.items() if k != "GLSANDBOX_AUDIT_KEY"}
    res = subprocess.run(
        [sys.executable, "-m", "glsandbox_kernel.cli", "run", str(src), "-o", str(tmp_path / "t.out.ipynb")],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
        cwd=ROOT,
    )
    assert "ValueError" in res.stdout + res.stderr, res.stdout + res.stderr  # the failure is reported
    found = sorted({repr(c) for c in CONTROL.findall(res.stdout + res.stderr)})
    assert not found, f"sandbox control characters reached the terminal: {found}\n{res.stdout!r}"
