"""Outside review: BASIC accepts ``disk_quota_bytes`` and does not enforce it (host disk filled).

Attack: STRICT's preset quota is 64 MiB. On BASIC the sandbox's working
directory is a private folder on the host's disk (``/tmp/glsandbox-*``),
not a tmpfs of the quota (only NAMESPACE/CHROOT mount one,
``confinement/mounts.py``), and RLIMIT_FSIZE limits one file, not the sum.
Writing many files below the per-file limit fills the host's disk: measured
here, 300 MiB written in 10 files of 30 MiB at STRICT with "quota 64 MiB",
no error.

Judged from the host: the sandboxed writes must fail (ENOSPC/EDQUOT/EFBIG)
before much more than the quota has landed, or BASIC must refuse a config
with a disk quota it cannot enforce (``BackendUnavailableError``), as the
charter says every backend does.

Fix (suggested): ``backends/basic.py`` + ``confinement/``: give BASIC's work
dir and private tmp a size-limited mount where it can (root: a tmpfs or a
loop/XFS project quota), or measure the folder from outside and kill past
the quota (like the memory monitor), or refuse ``disk_quota_bytes`` on
BASIC.
"""

from __future__ import annotations

import sys
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.exceptions import BackendUnavailableError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

OK, WHY = backends()["basic"].available()
pytestmark = pytest.mark.skipif(not OK, reason=f"basic: {WHY}")


def attack_fill(files: int, mib_each: int) -> dict[str, Any]:
    """SANDBOX side: write ``files`` files of ``mib_each`` MiB in the working directory."""
    import os

    chunk = b"x" * (1 << 20)
    wrote = 0
    try:
        for i in range(files):
            with open(f"fill-{i}", "wb") as fh:
                for _ in range(mib_each):
                    fh.write(chunk)
                    wrote += len(chunk)
        err = None
    except OSError as exc:
        err = exc.errno
    for i in range(files):  # leave the host's disk as it was, whatever the verdict
        try:
            os.unlink(f"fill-{i}")
        except OSError:
            pass
    return {"wrote": wrote, "errno": err}


def test_basic_enforces_or_refuses_the_disk_quota() -> None:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.BASIC)
    quota = cfg.limits.disk_quota_bytes
    assert quota is not None
    try:
        sb = OSSandbox(cfg)
    except BackendUnavailableError as exc:
        assert "disk" in str(exc).lower(), exc  # refused, naming what it cannot enforce
        return
    with sb:
        got = sb.execute(attack_fill, 4, max(1, (quota >> 20) // 2 + 1))  # ~2x the quota, each file under it
    assert got["errno"] is not None and got["wrote"] <= quota + (1 << 20), (
        f"BASIC wrote {got['wrote'] >> 20} MiB with a disk quota of {quota >> 20} MiB: {got}"
    )
