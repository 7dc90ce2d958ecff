"""Outside review (3rd): the namespace backend's disk quota holds per tmpfs, not for the sandbox: 2x quota.

Attack: at STRICT (``disk_quota_bytes`` 64 MiB) the sandboxed cell fills
``/tmp`` and then ``/dev/shm``. Each is its own tmpfs sized to the quota
(``size=65536k`` both), so the sandbox stores twice its disk quota (measured:
120 MiB held in one cell, both writes succeeded). Any further writable tmpfs
the mount plan adds multiplies it again.

Judged from the host: the bytes the sandbox could store in its scratch
file systems in one cell stay within ``disk_quota_bytes``.

Fix (suggested): ``confinement/mounts.py`` (namespace mount plan): one sized
tmpfs for all scratch space (``/dev/shm`` a folder of it, or a tiny one), or
split the quota between them.
"""

from __future__ import annotations

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = pytest.mark.skipif(not OK, reason=f"namespace: {WHY}")

CHUNK = 60 << 20

CODE = f"""
import os
stored = 0
for folder in ("/tmp", "/dev/shm"):
    try:
        with open(os.path.join(folder, "fill"), "wb") as f:
            for _ in range({CHUNK >> 20}):
                f.write(b"x" * (1 << 20))
                f.flush()
    except OSError:
        pass
    if os.path.exists(os.path.join(folder, "fill")):
        stored += os.path.getsize(os.path.join(folder, "fill"))
print(stored)
"""


def test_scratch_space_stays_within_the_disk_quota() -> None:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
    quota = cfg.limits.disk_quota_bytes
    assert quota is not None and quota < 2 * CHUNK
    with OSSandbox(cfg) as sb:
        result = sb.run_cell(CODE)
    assert result.status == "ok", result
    text = "".join(o.get("text", "") for o in result.outputs if o.get("output_type") == "stream")
    stored = int(text.split()[-1])
    assert stored <= quota, (
        f"the sandbox stored {stored >> 20} MiB in /tmp and /dev/shm under a {quota >> 20} MiB quota"
    )
