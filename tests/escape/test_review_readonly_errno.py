"""Which errno a write into the read-only project folder gets, per backend, is the README's (outside review).

Measured as root: BASIC answers EACCES (Landlock: its worker keeps uid 0, so no mount is read-only),
NAMESPACE EROFS for a new file, a deletion or a folder and EACCES for writing into an existing
file (its uid does not own it: the permission check comes first). The README said EROFS, with
"PermissionError" on BASIC only, so an analyst catching ``errno.EROFS`` missed the EACCES cases.
The read-only is kept as it is (Landlock has no EROFS); the README says what each backend answers.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ..conftest import ROOT, glsandbox_cli
from .test_outside5_common import need

pytestmark = pytest.mark.timeout(300)

SCRIPT = """
import errno, os
for what, fn in (("create", lambda: open("new.txt", "w")), ("append", lambda: open("data.csv", "a")),
                 ("mkdir", lambda: os.mkdir("sub")), ("unlink", lambda: os.unlink("data.csv"))):
    try:
        fn()
        print(what, "written")
    except OSError as e:
        print(what, errno.errorcode.get(e.errno))
"""


def _errnos(tmp_path: Path, backend: str) -> dict[str, str]:
    project = tmp_path / backend
    project.mkdir(mode=0o755)
    project.chmod(0o755)
    (project / "data.csv").write_text("a,b\n")
    (project / "w.py").write_text(SCRIPT)
    ran = glsandbox_cli(
        "exec", "--isolation", backend, "--level", "moderate", "--project", str(project), str(project / "w.py")
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (project / "data.csv").read_text() == "a,b\n" and not (project / "new.txt").exists()
    return dict(line.split() for line in ran.stdout.splitlines())


def test_readme_names_the_errno_each_backend_answers(tmp_path: Path) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("measured as root: the case the review found")
    need("basic", "namespace")
    tmp_path.chmod(0o755)
    readme = " ".join(Path(ROOT, "README.md").read_text().split())
    assert set(_errnos(tmp_path, "basic").values()) == {errno.errorcode[errno.EACCES]}
    assert "on BASIC always EACCES, as root too" in readme
    namespace = _errnos(tmp_path, "namespace")
    assert namespace == {"create": "EROFS", "append": "EACCES", "mkdir": "EROFS", "unlink": "EROFS"}, namespace
    assert (
        "EROFS (a read-only mount) for creating, deleting or making a folder, and EACCES for writing into an existing file"
        in readme
    )
