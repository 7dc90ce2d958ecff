"""Outside review 27: the disk guard charges the host's own writes to the sandbox and kills it for them.

Severity: medium (a well-behaved sandbox killed, its state lost, and a false limit verdict in its record:
``SandboxCrashedError(reason="disk_quota")`` "the sandbox wrote N MiB (measured outside)").

Attack / honest case: a writable project (LENIENT, or any ``project_access="write"``) under a disk quota;
while the kernel runs, the *host* user does ordinary work in the project: here ``git fetch`` adds a pack
to ``.git/``, a folder the sandbox cannot even see (``.git`` is in ``DEFAULT_MASKED_NAMES``: hidden from
every backend). Where: ``DiskGuard._rescan``/``_walk`` (disk_guard.py) count every entry below
``writable_roots(config)``, the whole project, masked folders included, and every inotify event there
whoever wrote it; ``used`` is the total less the total at the session's first worker. The host's 24 MiB
cross the 8 MiB quota and the guard kills the sandbox, which wrote nothing.

How judged, from the host: the sandbox's calls only add numbers; the host writes into the masked
``.git`` folder between two calls; the second call must return its value.

Suggested fix: leave the masked and hidden paths (``find_masked``'s results, the kernel's own audit log
and notebook if they live there) out of the walk and the events, and charge only what the sandbox could
write: for the uid-mapped backends (NAMESPACE, CONTAINER) only inodes owned by the sandbox's host uid;
for BASIC (same uid as the host) at least say in the verdict that the figure is the folders' growth,
not what the sandbox wrote.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, SandboxCrashedError, create_config_by_level

from .test_outside5_common import NOBODY, need

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(300)]

MiB = 1 << 20
QUOTA = 8 * MiB


def add(a: int, b: int) -> int:
    """SANDBOX side: writes nothing."""
    return a + b


@pytest.mark.parametrize("backend", ["namespace"])  # BASIC refuses a writable project holding a masked name
def test_the_hosts_own_writes_in_a_masked_folder_do_not_kill_the_sandbox(tmp_path: Path, backend: str) -> None:
    need(backend)
    os.chmod(tmp_path, 0o755)
    project = tmp_path / "project"
    git = project / ".git" / "objects" / "pack"
    git.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(project, NOBODY, NOBODY)
    fs = FilesystemConfig(project_dir=str(project), project_access="write")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType(backend), filesystem=fs)
    cfg = cfg.replace(limits=dataclasses.replace(cfg.limits, disk_quota_bytes=QUOTA))
    with OSSandbox(cfg) as sb:
        assert sb.execute(add, 1, 2) == 3
        with open(git / "pack-0001.pack", "wb") as fh:  # HOST side: the user's git fetch
            fh.write(os.urandom(24 * MiB))
            fh.flush()
            os.fsync(fh.fileno())
        time.sleep(1.5)  # the guard's next full walk
        try:
            got: object = sb.execute(add, 2, 3)
        except SandboxCrashedError as exc:
            got = exc
    assert got == 5, (
        f"{backend}: the host wrote 24 MiB into the project's masked .git (hidden from the sandbox), and the "
        f"sandbox, which wrote nothing, got {got!r}"
    )
