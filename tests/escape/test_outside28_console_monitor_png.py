"""Outside review 28 (new user): every cell over half a second leaves a PNG in ``jupyter console``'s temp folder.

Severity: low. The kernel's monitor summary of any cell that runs longer than ``LIVE_AFTER`` (0.5 s:
an ``input()``, a ``sleep``, a ``pip install``) carries an ``image/png`` chart ("for exporters that take
no HTML"). ``jupyter console`` (its default ``image_handler`` "PIL") shows each image with PIL's
``Image.show()``, which writes a 0600 ``tmpXXXX.PNG`` into the temp folder and hands it to a viewer: on a
headless host the console prints "no method available for opening '/tmp/tmpXXXX.PNG'" under the cell
and the file stays behind, one per such cell, unasked (measured: files from earlier sessions piling up
in this machine's /tmp). The user asked for no figure.

Judged from the host: the ``*.PNG`` files in the console's ``TMPDIR`` after one cell that waits 1 s.

Suggested fix: no ``image/png`` in the kernel's own monitor summary (the HTML holds the chart inline;
exporters that take no HTML get the text line), or only for frontends that asked for it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from ..jupyter_fixtures import glsandbox_kernelspec  # noqa: F401 - fixture
from .test_outside5_common import need

pytestmark = pytest.mark.timeout(240)


def test_a_console_cell_leaves_no_png_behind(glsandbox_kernelspec: str, tmp_path: Path) -> None:  # noqa: F811
    need("namespace")
    pexpect = pytest.importorskip("pexpect")
    console = shutil.which("jupyter-console", path=os.path.dirname(sys.executable))
    if console is None:
        pytest.skip("jupyter_console is not installed")
    project = tmp_path / "project"
    project.mkdir()
    temp = tmp_path / "temp"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp))
    child = pexpect.spawn(
        console, ["--kernel", "glsandbox", "--simple-prompt"], cwd=str(project), env=env, encoding="utf-8", timeout=120
    )
    try:
        child.expect(r"In \[1\]:")
        child.sendline("import time; time.sleep(1); print('done')")
        child.expect(r"In \[2\]:")
        shown = child.before
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    left = sorted(p.name for p in temp.iterdir() if p.suffix.lower() == ".png")
    assert not left, f"one cell of 1 s left {left} in the console's temp folder; the console showed: {shown[-300:]!r}"
