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

from ..conftest import glsandbox_cli
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
    project = _project(tmp_path)
    ran = glsandbox_cli("exec", "--isolation", "container", str(project / "calc.py"))
    assert ran.returncode == 1, ran.stdout + ran.stderr  # the script's own FileNotFoundError, as before
    assert f"the project folder {project} is not shown to the sandbox: it holds signing.key" in ran.stderr
    assert "use isolation namespace" in ran.stderr
    (project / "signing.key").unlink()
    ran = glsandbox_cli("exec", "--isolation", "container", str(project / "calc.py"))
    assert ran.returncode == 0 and "2 rows" in ran.stdout, ran.stdout + ran.stderr
    assert "not shown" not in ran.stderr


def test_kernel_first_cell_says_why_the_container_shows_no_project(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    need("container")
    project = _project(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(CALC)]
    nbformat.write(nb, str(project / "nb.ipynb"))
    out = tmp_path / "out.ipynb"
    ran = glsandbox_cli("run", str(project / "nb.ipynb"), "--isolation", "container", "-o", str(out))
    assert "FileNotFoundError" in ran.stdout, ran.stdout + ran.stderr
    outputs = nbformat.read(str(out), 4).cells[0].outputs
    shown = [str(o.get("text") or o.get("data", {}).get("text/plain", "")) for o in outputs]  # a notice: display_data
    assert any(f"the project folder {project} is not shown to the sandbox: it holds signing.key" in t for t in shown)
    verified = glsandbox_cli("audit", "verify", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr  # the notice is a covered kernel output
