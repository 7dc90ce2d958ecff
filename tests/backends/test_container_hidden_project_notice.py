"""A CONTAINER/GVISOR sandbox that does not show the project folder says so, and why.

The container's binds cannot hide single names inside a folder, so a project that holds a masked
name (a ``.git`` folder, an ``.env``, a ``signing.key``) is not shown at all. Before, only the
host's log said so: in the new-user walkthrough of 2026-12-04, ``glsandbox exec --isolation
container calc.py`` beside a ``signing.key`` ran in an empty ``/work`` and failed with
``FileNotFoundError: 'emissions.csv'``, and so did every cell of ``glsandbox run --isolation
container``, with nothing naming the cause. Now ``exec`` prints it and the kernel's first cell shows
it as a notice (listed in the cell's record like the other start notices).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import assert_exec_notice_until_fixed, assert_first_cell_notice
from ..escape.test_outside5_common import need

pytestmark = pytest.mark.timeout(400)

CALC = "import csv\nprint(len(list(csv.DictReader(open('emissions.csv')))), 'rows')\n"


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "emissions"
    project.mkdir()
    (project / "emissions.csv").write_text("activity,amount\ndiesel,120\npetrol,80\n")
    (project / "calc.py").write_text(CALC)
    (project / "signing.key").write_text("not for the sandbox\n")
    return project


def test_exec_says_why_the_container_shows_no_project(tmp_path: Path) -> None:
    need("container")
    project = _project(tmp_path)  # the script's own FileNotFoundError, as before, now with the reason
    notice = f"the project folder {project} is not shown to the sandbox: it holds signing.key (masked names)"
    argv = ["--isolation", "container", str(project / "calc.py")]
    assert_exec_notice_until_fixed(argv, notice, (project / "signing.key").unlink, "2 rows")


def test_kernel_first_cell_says_why_the_container_shows_no_project(tmp_path: Path) -> None:
    pytest.importorskip("nbformat")
    need("container")
    project = _project(tmp_path)
    notice = f"the project folder {project} is not shown to the sandbox: it holds signing.key"
    assert_first_cell_notice(project, [CALC], ["--isolation", "container"], "FileNotFoundError", notice)
