"""Outside review (6th): files that grow after the host's scan get hashed past the hashing budget, sizes wrong.

Attack: the written-files evidence (``written_files.WriteTracker.changes``)
takes a snapshot of the writable folders after the call, checks each file's
*snapshot* size against ``max_hash_bytes`` (1 GiB a call) and then hashes the
file by reading it to EOF. The worker is persistent and its threads keep
running after the call returns: the cell creates some files of 250 MiB
(sparse: free on disk, within ``max_file_size_bytes``) that take the host a
while to hash, plus empty files, and leaves a thread that grows the empty
files to 250 MiB (``truncate``, instant) a moment later, after the snapshot
but before the host reaches them. The host then hashes every one of them in
full (the budget was charged their snapshot size, 0) and records
``size: 0`` next to the SHA-256 of 250 MiB. Nothing bounds it but the
number of files (100 000 entries) times the file size limit: hours of host
CPU inside the caller's ``execute``, after the call's own timeout, and the
audit record says something false about every such file.

Measured here (namespace, MODERATE, root, project owned by uid 65534):
16 such files, 5 GiB hashed against the 1 GiB budget, 53 s wall / 10 s host
CPU for a call whose sandboxed part took milliseconds; every entry
``size 0`` with the hash of 250 MiB of zeros.

Judged from the host: every recorded hash is the hash of ``size`` bytes (the
content is known: zeros), and the bytes hashed stay within the budget.

Fix (suggested): ``written_files.py``: hash at most the snapshot size (read
``stamp[0]`` bytes, then compare ``fstat`` to the stamp and mark the file
"changed while hashing"), charge the budget what was read, and freeze the
sandbox (cgroup freezer / SIGSTOP of the tree) while scanning.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import OSSandbox

from .test_outside5_common import namespace_project

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(400)

SIZE = 250 << 20
BUDGET = 1 << 30  # WriteTracker.max_hash_bytes


def grow_later(out: str) -> str:
    """SANDBOX side: four sparse files that take the host time to hash, four empty ones grown a moment later."""
    import threading
    import time

    for i in range(4):
        with open(f"{out}/a{i}", "wb") as fh:
            fh.truncate(SIZE)
    names = [f"{out}/b{i}" for i in range(4)]
    for name in names:
        open(name, "wb").close()

    def grow() -> None:
        time.sleep(0.2)
        for name in names:
            with open(name, "r+b") as fh:
                fh.truncate(SIZE)

    threading.Thread(target=grow, daemon=True).start()
    return "ok"


def test_written_files_are_hashed_as_recorded_and_within_the_budget(tmp_path: Path) -> None:
    project, cfg = namespace_project(tmp_path)
    with OSSandbox(cfg) as sb:
        assert sb.execute(grow_later, str(project / "sandbox-output")) == "ok"
        records: list[dict[str, Any]] = [r for r in sb.audit_records if (r.get("extra") or {}).get("written_files")]
    assert records, "no record lists written files"
    entries = [e for e in records[-1]["extra"]["written_files"] if e.get("sha256")]
    full = hashlib.sha256(bytes(SIZE)).hexdigest()
    hashed = sum(SIZE for e in entries if e["sha256"] == full)
    wrong = [(os.path.basename(e["path"]), e["size"]) for e in entries if e["sha256"] == full and e["size"] != SIZE]
    assert not wrong and hashed <= BUDGET, (
        f"the host hashed {hashed >> 20} MiB (budget {BUDGET >> 20} MiB); entries recorded with a size that is "
        f"not what was hashed (name, recorded size): {wrong}"
    )
