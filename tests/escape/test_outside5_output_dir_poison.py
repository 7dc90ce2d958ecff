"""Outside review (6th): one MODERATE cell makes every later sandbox of the project refuse to start.

Attack: at MODERATE the sandbox may write ``sandbox-output/`` inside the
project. What it leaves there is read by the *host* at every later start:
``project.find_masked`` scans the whole project, output folder included,
and BASIC refuses a writable folder that holds a masked name ("Landlock
grants whole folders"), CONTAINER hides the whole project when it holds one,
and any backend refuses a project with more than 100 000 entries. So one
cell that writes ``sandbox-output/.env`` (an empty file) or 100 001 empty
files denies the analyst every future session on that project (BASIC:
``BackendUnavailableError``; CONTAINER: ``/work/project`` gone) until they
find and delete the file by hand; nothing names the cell that did it.

Measured here (MODERATE, root, project owned by uid 65534): a NAMESPACE
session wrote ``sandbox-output/.env`` (BASIC itself refuses to create it:
EACCES), and the next BASIC session on the same project raised
``BackendUnavailableError`` naming that file. The 100 001-entry variant
needs no masked name and was not run here (slow on this loaded machine).

Judged from the host: after the first session wrote its file, a second
session on the same project starts and reads the project's CSV.

Fix (suggested): ``project.py`` / ``confinement/landlock.py`` /
``backends/container/settings.py``: the output folder is the sandbox's own:
mask (or leave out) masked names inside it instead of refusing, don't count
it against the scan budget (or show it without a scan: nothing of the
user's is in it), and record in the audit which cell created such entries.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, create_config_by_level

from .test_outside5_common import folders, need


def plant(path: str) -> str:
    """SANDBOX side: an empty file with a masked name in the output folder."""
    with open(path, "w"):
        pass
    return "planted"


def read(path: str) -> str:
    """SANDBOX side: the project's data."""
    with open(path) as fh:
        return fh.read()


def test_the_output_folder_cannot_lock_the_analyst_out_of_the_project(tmp_path: Path) -> None:
    need("basic", "namespace")
    project, _ = folders(tmp_path)
    (project / "activity.csv").write_text("site,kwh\nA,10\n")
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.BASIC, filesystem=fs)
    first = create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE, filesystem=fs)
    with OSSandbox(first) as sb:
        assert sb.execute(plant, str(project / "sandbox-output" / ".env")) == "planted"
    try:
        with OSSandbox(cfg) as sb:
            got = sb.execute(read, str(project / "activity.csv"))
    except Exception as exc:  # noqa: BLE001 - any refusal is the finding
        pytest.fail(f"after one cell wrote sandbox-output/.env, the next session refuses: {type(exc).__name__}: {exc}")
    assert got == "site,kwh\nA,10\n"
