"""The kernel's start-up notices reach the notebook (review 13, findings 3 and 7), through real kernels.

Why the sandbox shows no project folder (the kernel started in ``/``, as papermill does from
``/``), and an existing output folder the sandbox cannot write (as root, a root-owned
``sandbox-output/``): each is a kernel notice among the first cell's outputs, once, not only a
line on the kernel's terminal.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, notices_of

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("glsandbox_kernelspec")]


def _first_two_cells(cwd: str) -> tuple[str, str]:
    k = Kernel("glsandbox", cwd=cwd)
    try:
        reply, first = k.execute("print('one')", timeout=120)
        assert reply["status"] == "ok", reply
        reply, second = k.execute("print('two')", timeout=120)
        assert reply["status"] == "ok", reply
        return notices_of(first), notices_of(second)
    finally:
        k.shutdown()


def test_a_kernel_started_in_root_says_why_in_the_notebook() -> None:
    first, second = _first_two_cells("/")
    assert "/, which cannot be a project folder" in first and "--cwd" in first, first
    assert "project folder" not in second, second  # once


def test_an_output_folder_the_sandbox_cannot_write_is_named_with_its_fix(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: a folder of another owner the sandbox writes as")
    os.chmod(tmp_path, 0o755)
    project = tmp_path / "emissions"
    (project / "sandbox-output").mkdir(parents=True, mode=0o755)  # root-owned: the sandbox writes as 65534
    first, second = _first_two_cells(str(project))
    assert "sandbox-output is not writable by the sandbox" in first, first
    assert "owned by root" in first and "chown 65534:65534" in first, first
    assert "not writable" not in second, second


def test_a_start_notice_is_listed_in_the_cells_sealed_record(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: a folder of another owner the sandbox writes as")
    import subprocess
    import sys

    import nbformat

    os.chmod(tmp_path, 0o755)
    project = tmp_path / "emissions"
    (project / "sandbox-output").mkdir(parents=True, mode=0o755)
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("print(1)"))
    nbformat.write(nb, project / "in.ipynb")
    cli = [sys.executable, "-m", "glsandbox_kernel.cli"]
    run = subprocess.run([*cli, "run", "in.ipynb", "-o", "out.ipynb"], cwd=project, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "not writable by the sandbox" in (project / "out.ipynb").read_text()
    verify = subprocess.run(
        [*cli, "audit", "verify", "--strict", "out.ipynb"], cwd=project, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr  # the notice is one of the cell's recorded outputs
