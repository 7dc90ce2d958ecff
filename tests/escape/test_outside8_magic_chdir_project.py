"""Outside review (9th): after a ``chdir``, the magic's writable ``--project`` is the stock kernel's start folder.

Attack: ``magics/host_path.guard_project`` shows a writable project read-only
when it holds the host kernel's *current* working directory or a ``sys.path``
entry. But the folder a stock kernel restarts in -- ``python -m
ipykernel_launcher`` with the kernel manager's cwd, the notebook's folder,
where ``-m`` finds a planted ``ipykernel_launcher.py`` first -- is the cwd it
*started* in. ``ipykernel_launcher`` deletes that folder from ``sys.path``
and IPython adds back ``''``, which follows ``os.chdir``. So a notebook that
does ``%cd ../data`` (or ``os.chdir``) and then ``%%sandbox lenient --project
<the notebook's folder>`` gets a writable project that guard_project does not
see (neither the cwd nor any ``sys.path`` entry is under it); the LENIENT cell
writes ``ipykernel_launcher.py`` there, and the next restart of the kernel runs
it on the host, outside every control.

Measured here (root, namespace): the cell printed ``planted True``; ``python -m
ipykernel_launcher`` started in the notebook's folder (what a restart runs)
wrote the marker in a host-only folder.

Judged from the host: after the cell, starting ``python -m ipykernel_launcher``
in the kernel's start folder does not run what the cell wrote.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .test_outside5_common import folders, need
from .test_outside8_common import magic_kernel, plant

pytestmark = pytest.mark.timeout(300)

PAYLOAD = "import os\nopen({marker!r}, 'w').write('uid %d ran the planted launcher' % os.getuid())\n"


def test_a_chdir_does_not_make_the_kernels_start_folder_a_writable_magic_project(tmp_path: Path) -> None:
    need("namespace")
    project, outside = folders(tmp_path)
    (tmp_path / "data").mkdir()
    marker = outside / "ran-by-restart"
    payload = PAYLOAD.format(marker=str(marker))
    moved, said = magic_kernel(
        project, "import os\nos.chdir('../data')\nprint(os.getcwd())", plant(project, "ipykernel_launcher.py", payload)
    )
    assert "ERROR" not in moved, moved
    # what the kernel manager's restart runs: python -m ipykernel_launcher in the kernel's start folder
    subprocess.run(
        [sys.executable, "-m", "ipykernel_launcher", "--version"], cwd=project, capture_output=True, timeout=120
    )
    assert not marker.exists(), (
        f"a LENIENT %%sandbox cell with --project the kernel's start folder (after a chdir) planted "
        f"ipykernel_launcher.py that a restart runs on the host: {marker.read_text()!r} ({said.strip()!r})"
    )
