"""Outside review (7th): ``glsandbox run`` still writes through a symlink the sandbox planted -- one folder up.

Attack: review 6's fix (``host_files.replace_file``: temp file + rename) protects
the file name only; the folder is opened by path (``os.open(parent,
O_DIRECTORY)``), following links. With the notebook in a subfolder of a LENIENT
project (``glsandbox run proj/sub/nb.ipynb --project proj --level lenient``,
or any ``-o``/``report -o``/``attest`` path below the project), the cell renames
``sub`` away and puts a symlink ``sub -> /any/host/folder`` there; the host
then creates (or replaces) ``nb.glsandbox.ipynb`` in that folder, as root,
with the sandbox's outputs in it, and reports ``wrote .../sub/nb.glsandbox.ipynb``
with "audit: OK".

Measured here (root, namespace, project owned by uid 65534): a 0700 root
folder the sandbox never saw holds the new ``nb.glsandbox.ipynb``.

Judged from the host: the host-only folder stays empty.

Fix (suggested): open the output's folder component by component with
``O_NOFOLLOW`` (or ``openat2(RESOLVE_NO_SYMLINKS)``) and refuse a link, or
resolve the output path once before the kernel starts and compare the folder's
``(st_dev, st_ino)`` after the run (refuse when it changed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..conftest import NOBODY, glsandbox_cli
from .test_outside5_common import folders, need, write_notebook

pytestmark = pytest.mark.timeout(300)

CELL = """
import os
os.rename({sub!r}, {sub!r} + ".orig")
os.symlink({target!r}, {sub!r})
print("planted", os.readlink({sub!r}))
"""


def test_the_run_output_is_not_written_through_a_folder_the_sandbox_replaced(tmp_path: Path) -> None:
    need("namespace")
    project, host_only = folders(tmp_path)
    sub = project / "sub"
    sub.mkdir()
    write_notebook(sub / "nb.ipynb", CELL.format(sub=str(sub), target=str(host_only)))
    if os.geteuid() == 0:
        for path in (sub, sub / "nb.ipynb"):
            os.chown(path, NOBODY, NOBODY)
    res = glsandbox_cli("run", str(sub / "nb.ipynb"), "--level", "lenient", "--project", str(project))
    assert "planted" in res.stdout + res.stderr or os.path.islink(sub), res.stdout + res.stderr
    assert not os.listdir(host_only), (
        f"glsandbox run wrote into a host-only folder through the sandbox's symlink {sub} -> {host_only}: "
        f"{os.listdir(host_only)} ({res.stdout.strip().splitlines()[-2:]})"
    )
