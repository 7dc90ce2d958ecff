"""As root, a folder the level lets the sandbox write that it cannot write is named, with the fix.

The sandbox never writes as root (NAMESPACE: the folder's non-root owner, else uid 65534;
CONTAINER/GVISOR: uid 65534), so a LENIENT project owned by root was writable in name only: in the
new-user walkthrough of 2026-12-04, ``glsandbox run`` with ``"level": "lenient"`` in a root-owned
project failed its first ``open("out.txt", "w")`` with ``PermissionError`` and nothing said why.
Now ``glsandbox exec`` prints it and the kernel's first cell shows it as a start notice.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..conftest import NOBODY, assert_exec_notice_until_fixed, assert_first_cell_notice
from ..escape.test_outside5_common import need

pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(os.geteuid() != 0, reason="as root only: a non-root sandbox writes as its user"),
]

WRITE = "import os\nopen('out.txt', 'w').write('x')\nprint('wrote', os.getcwd())\n"


def _project(tmp_path: Path) -> Path:
    os.chmod(tmp_path, 0o755)
    project = tmp_path / "emissions"
    project.mkdir(mode=0o755)
    (project / "write.py").write_text(WRITE)
    return project


@pytest.mark.parametrize("isolation", ["namespace", "container"])
def test_exec_names_a_lenient_project_the_sandbox_cannot_write(tmp_path: Path, isolation: str) -> None:
    need(isolation)
    project = _project(tmp_path)
    notice = f"{project} is owned by root (mode 755) and the sandbox writes as uid {NOBODY}"

    def fix() -> None:  # the fix the notice names: a folder the sandbox's uid owns
        os.chown(project, NOBODY, NOBODY)

    argv = ["--level", "lenient", "--isolation", isolation, str(project / "write.py")]
    assert_exec_notice_until_fixed(argv, notice, fix, "wrote")


def test_kernel_first_cell_names_a_lenient_project_the_sandbox_cannot_write(tmp_path: Path) -> None:
    pytest.importorskip("nbformat")
    need("namespace")
    project = _project(tmp_path)
    args = ["--level", "lenient", "--allow-errors"]
    notice = f"{project} is owned by root (mode 755)"
    assert_first_cell_notice(project, [WRITE, "print('second')"], args, "PermissionError", notice)
