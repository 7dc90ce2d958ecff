"""The CONTAINER and GVISOR backends show a project folder in the analyst's home.

A new user's project lives in their home (``~/emissions``: ``/home/ana/emissions``, or
``/root/emissions`` as root), which lies under the blocked paths ``/home`` and ``/root``. NAMESPACE
shows it (a folder the user names wins over the blocked folder above it: ``mounts.blocked_by``);
the container backends refused every such folder, so ``glsandbox exec --isolation container
calc.py`` in ``~/emissions`` failed with "filesystem.project_dir: '/root/emissions' overlaps the
blocked path '/root'" (found by the new-user walkthrough of 2026-12-04). A folder that *is* or
*holds* a blocked path (``/home``, ``/var/run``) stays refused.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandboxConfig, SandboxConfigError
from glsandbox_kernel.backends.container.settings import container_settings
from glsandbox_kernel.config import DEFAULT_BLOCKED_PATHS

from ..conftest import glsandbox_cli
from ..escape.test_outside5_common import need

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def home_project() -> Iterator[Path]:
    """A project folder in the home of the user running the tests, when that home is blocked."""
    home = os.path.realpath(os.path.expanduser("~"))
    if not any(home == b or home.startswith(b + "/") for b in DEFAULT_BLOCKED_PATHS) or not os.access(home, os.W_OK):
        pytest.skip(f"the home folder {home} is not under a blocked path, or not writable")
    project = Path(home) / f"glsandbox-test-emissions-{uuid.uuid4().hex[:8]}"
    project.mkdir()
    try:
        (project / "emissions.csv").write_text("activity,amount,factor\ndiesel,120,2.68\npetrol,80,2.31\n")
        (project / "calc.py").write_text(
            "import csv, os\n"
            "rows = list(csv.DictReader(open('emissions.csv')))\n"
            "print('cwd', os.getcwd())\n"
            "print('total', round(sum(float(r['amount']) * float(r['factor']) for r in rows), 2))\n"
        )
        yield project
    finally:
        shutil.rmtree(project)


@pytest.mark.parametrize("isolation", ["container", "gvisor"])
def test_exec_reads_a_project_in_the_home_folder(home_project: Path, isolation: str) -> None:
    need(isolation)
    ran = glsandbox_cli("exec", "--isolation", isolation, str(home_project / "calc.py"))
    assert ran.returncode == 0, f"{isolation} cannot show {home_project}:\n{ran.stdout[-1500:]}{ran.stderr[-1500:]}"
    assert "cwd /work/project" in ran.stdout
    assert "total 506.4" in ran.stdout


def test_settings_bind_a_folder_below_a_blocked_one_and_refuse_one_holding_it(tmp_path: Path) -> None:
    need("container")
    blocked = tmp_path / "home"
    project = blocked / "ana" / "emissions"
    project.mkdir(parents=True)
    fs = FilesystemConfig(project_dir=str(project), blocked_paths=(str(blocked),))
    settings = container_settings(
        OSSandboxConfig(isolation_type=IsolationType.CONTAINER, filesystem=fs), session_id="s", socket_dir="/tmp/x"
    )
    binds = {src: v["bind"] for src, v in settings["volumes"].items()}
    assert binds.get(str(project)) == "/work/project", binds
    for holding in (str(blocked), str(tmp_path)):  # the blocked folder itself, a folder holding it
        fs = FilesystemConfig(project_dir=str(project), readonly_paths=(holding,), blocked_paths=(str(blocked),))
        with pytest.raises(SandboxConfigError, match="overlaps the blocked path"):
            container_settings(
                OSSandboxConfig(isolation_type=IsolationType.CONTAINER, filesystem=fs),
                session_id="s",
                socket_dir="/tmp/x",
            )
