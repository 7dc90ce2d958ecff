"""README commands a new user copies as written (the walkthrough of 2026-12-04), run as real subprocesses.

``glsandbox install --name emissions ... --project ~/emissions --ro ~/shared-factors`` installed a
kernelspec for folders that do not exist without a word; its first cell then failed with
"SandboxConfigError: project_dir: /root/emissions: No such file or directory". ``python -m
glsandbox_kernel.distributed doctor tcp://SCHED:8786`` on a machine with the analyst's extras
(``[all]``, no Dask) printed a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..conftest import glsandbox_run_cells

GLSANDBOX = [sys.executable, "-m", "glsandbox_kernel.cli"]


def test_install_warns_of_folders_that_do_not_exist(tmp_path: Path) -> None:
    present = tmp_path / "shared-factors"
    present.mkdir()
    missing = tmp_path / "emissions"
    argv = [*GLSANDBOX, "install", "--prefix", str(tmp_path / "env"), "--name", "emissions", "--level", "moderate"]
    argv += ["--project", str(missing), "--ro", str(present), "--rw", str(tmp_path / "results")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr  # installed all the same: the folder may be made later
    spec = json.loads((tmp_path / "env/share/jupyter/kernels/emissions/kernel.json").read_text())
    assert f"--SandboxKernel.project={missing}" in spec["argv"]
    assert f"--project {missing} does not exist (yet): every cell fails" in proc.stderr
    assert f"--rw {tmp_path / 'results'} does not exist (yet)" in proc.stderr
    assert str(present) not in proc.stderr
    missing.mkdir()
    (tmp_path / "results").mkdir()
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "warning" not in again.stderr, again.stderr


def test_cluster_doctor_without_dask_is_one_line() -> None:
    code = (
        "import sys; sys.modules['distributed'] = None\n"  # what a machine without the [distributed] extra has
        "from glsandbox_kernel.distributed.__main__ import main\n"
        "sys.exit(main(['doctor', 'tcp://127.0.0.1:1']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'glsandbox-kernel[distributed]'" in proc.stderr


def test_run_of_a_magic_notebook_says_which_door_it_needs(tmp_path: Path) -> None:
    """``glsandbox run magic.ipynb`` (a python3 notebook of ``%%sandbox strict --in ...`` cells) stopped at
    the first magic cell with "UsageError: %%sandbox: unrecognized arguments: strict --in activity" and
    an audit FAILED; now it says first that the notebook needs its own kernel, and how to run it."""
    magic = ["%load_ext glsandbox_kernel\nactivity = {'diesel': 120}", "%%sandbox strict --in activity\nx = 1"]
    ran, _out, _shown = glsandbox_run_cells(tmp_path, magic, kernel="python3")
    assert "is a notebook of the 'python3' kernel with %%sandbox magic cells (cell 2" in ran.stderr, ran.stderr
    assert f"papermill {tmp_path / 'nb.ipynb'} OUT.ipynb" in ran.stderr
    ran, _out, shown = glsandbox_run_cells(tmp_path, ["%%sandbox --timeout 5\n1 + 1"])  # the kernel's limits line
    assert ran.returncode == 0 and "note:" not in ran.stderr, ran.stdout + ran.stderr
    assert shown[0][0] == "2"
