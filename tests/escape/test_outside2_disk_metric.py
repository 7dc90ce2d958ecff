"""Outside review (3rd): a cell that wrote and fsynced 32 MiB is recorded with ``disk_write_bytes: 0``.

Attack (or plain use): the sandboxed cell writes 32 MiB into its writable
project folder (ext4 on the host disk here) and fsyncs it. On this cgroup v1
host the metric comes from ``blkio.throttle.io_service_bytes``, which counts
only I/O the kernel attributes to the cgroup; buffered writes are written
back by the flusher threads in the root cgroup, so the file reads present,
but the sandbox's metrics and its audit record say 0 bytes written: a
measured-looking zero for something that was not measured (the charter:
"a metric not measured is None, never 0"). A sandbox can fill the disk and
its evidence says it wrote nothing.

Judged from the host: after the cell, ``disk_write_bytes`` is None or at
least the size the host sees on disk.

Fix (suggested): ``confinement/cgroups/v1.py`` (``io_bytes``): report None for
writes on cgroup v1 (buffered writeback is not attributed) unless measured
another way (e.g. the written-files scan's byte count, or ``/proc/PID/io``
``write_bytes`` of the sandbox's processes, summed from outside).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from glsandbox_kernel import OSSandbox, create_config_by_level

SIZE = 32 << 20


def test_disk_write_bytes_is_not_a_measured_looking_zero(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    os.chown(project, 65534, 65534)  # not root-owned: the sandbox may write there (README)
    cfg = create_config_by_level("moderate")
    fs = dataclasses.replace(cfg.filesystem, project_dir=str(project), project_access="write", output_dir=None)
    target = project / "big.bin"
    code = (
        "import os\n"
        f"with open({str(target)!r}, 'wb') as f:\n"
        f"    f.write(b'x' * {SIZE})\n"
        "    f.flush()\n"
        "    os.fsync(f.fileno())\n"
    )
    with OSSandbox(dataclasses.replace(cfg, filesystem=fs)) as sb:
        result = sb.run_cell(code)
        assert result.status == "ok", result
        written = sb.metrics.disk_write_bytes
        recorded = (result.audit_record or {}).get("metrics", {}).get("disk_write_bytes")
    on_disk = target.stat().st_size
    assert on_disk == SIZE
    assert written is None or written >= on_disk, (
        f"the host sees {on_disk} bytes written and fsynced; the sandbox's metrics say disk_write_bytes={written} "
        f"(audit record: {recorded})"
    )
