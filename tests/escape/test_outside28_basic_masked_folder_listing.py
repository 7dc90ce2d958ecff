"""Outside review 28: BASIC lists what a masked folder holds (``.git``, ``.ssh``, ``.aws``).

Severity: medium. BASIC shows the project through Landlock: the project folder is granted
``READ_DIR`` ("folder listable only") and every other entry one by one, masked ones left out. But a
Landlock right on a folder covers its whole subtree, so every masked *folder* below the project stays
listable: ``os.listdir(".git/refs/heads")`` names the branches, ``.git/objects/ab/`` the SHA-1 of each
loose blob (for a short committed secret, ``PIN=4711`` in an old ``.env``, a hash to test guesses
against offline), ``.ssh/`` the key file names, ``.aws/`` the profile files; ``os.stat`` gives their
sizes and times. NAMESPACE shows the same folders as empty mode-000 tmpfs (``PermissionError``), and
BASIC itself denies inotify because a watch "would read the names and activity of folders it is not
shown": the listing reads the names directly. The README says reading a masked name "fails with a
permission error".

Judged from the host: the names the sandbox returned against the names the host put in the masked
folders.

Kept as a strict xfail: refusing BASIC for every project with a `.git` folder, or making the
project folder unlistable, costs analysts more than the names do; the README names the limit.

Suggested fix (not taken): grant ``READ_DIR`` on the project folder's own entries only where they are not masked
(Landlock cannot take a right away below a grant: a folder holding a masked folder gets the rights of
each unmasked child, not the folder's), or refuse a project with masked folders on BASIC, as a
writable one is refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.config import FilesystemConfig

from .test_outside5_common import need

pytestmark = [pytest.mark.timeout(180)]

SECRET = b"PIN=4711\n"


def list_masked(project: str) -> dict[str, object]:
    """SANDBOX side: what listing the masked folders gives (names, or the error)."""
    import os

    got: dict[str, object] = {}
    for sub in (".git/refs/heads", ".git/objects", ".ssh"):
        try:
            names = []
            for top, dirs, files in os.walk(os.path.join(project, sub), onerror=lambda e: (_ for _ in ()).throw(e)):
                names += [os.path.relpath(os.path.join(top, f), project) for f in files + dirs]
            got[sub] = sorted(names)
        except OSError as exc:
            got[sub] = f"{type(exc).__name__}: {exc.strerror}"
    return got


@pytest.mark.xfail(
    strict=True,
    reason="known limit, documented in the README (Masked names, BASIC): Landlock cannot take a right away "
    "below a grant, so names inside a masked folder stay listable (not readable) on BASIC; NAMESPACE hides them",
)
def test_basic_does_not_list_masked_folders(tmp_path: Path) -> None:
    need("basic")
    os.chmod(tmp_path, 0o755)
    project = tmp_path / "project"
    (project / ".git" / "refs" / "heads").mkdir(parents=True)
    (project / ".git" / "refs" / "heads" / "acquisition-of-acme").write_text("0" * 40 + "\n")
    blob = hashlib.sha1(b"blob %d\0" % len(SECRET) + SECRET).hexdigest()
    (project / ".git" / "objects" / blob[:2]).mkdir(parents=True)
    (project / ".git" / "objects" / blob[:2] / blob[2:]).write_bytes(b"z")
    (project / ".ssh").mkdir()
    (project / ".ssh" / "id_ed25519_prod-db-01").write_text("key")
    (project / "data.csv").write_text("a\n1\n")
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.BASIC, filesystem=fs)
    with OSSandbox(cfg) as sb:
        got = sb.execute(list_masked, str(project))
    leaked = {sub: names for sub, names in got.items() if isinstance(names, list) and names}
    assert not leaked, (
        f"basic moderate: the sandbox listed inside the project's masked folders: {leaked} "
        f"(blob {blob} is the SHA-1 of {SECRET!r})"
    )
