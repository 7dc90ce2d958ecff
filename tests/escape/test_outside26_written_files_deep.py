"""Outside review 26: a file written below a path longer than PATH_MAX is in no record, and the scan says complete.

Severity: medium (evidence of results files: MODERATE's ``sandbox-output/`` and every LENIENT project).

Attack: the cell makes a chain of folders in ``sandbox-output/`` one at a time (``mkdir`` relative
to the last one's fd, so no single call names a long path), until the full path passes PATH_MAX
(4096), and writes ``results.csv`` at the bottom.

What the host saw (before the fix, NAMESPACE, MODERATE): the host's written-files scan lists each
folder by its full path; ``scandir`` of the first one past PATH_MAX fails with ENAMETOOLONG and the
walk passed over it silently, so the cell's record listed nothing and carried no ``incomplete``
entry: the record claimed a complete scan with the file on disk unnamed.

Expected: a path the scan cannot read makes the record say the scan is incomplete, with how many
paths were passed over (or the file is listed).
"""

from __future__ import annotations

import os
from pathlib import Path

from glsandbox_kernel import OSSandbox

from .test_outside5_common import namespace_project

CELL = """
import os
fd = os.open('sandbox-output', os.O_RDONLY | os.O_DIRECTORY)
for _ in range(24):  # 24 x 201 bytes: past PATH_MAX (4096) below the project
    os.mkdir('d' * 200, dir_fd=fd)
    sub = os.open('d' * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = sub
out = os.open('results.csv', os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
os.write(out, b'forged,99\\n')
os.close(out)
os.close(fd)
"""


def _deep_file_exists(root: Path) -> bool:
    """HOST side: ``results.csv`` at the bottom of the chain, reached fd by fd (the full path is too long)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(24):
            sub = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        os.stat("results.csv", dir_fd=fd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def test_a_path_past_path_max_makes_the_scan_incomplete(tmp_path: Path) -> None:
    project, cfg = namespace_project(tmp_path)
    with OSSandbox(cfg) as sandbox:
        result = sandbox.run_cell(CELL)
        assert result.status == "ok", result.error_value
        written = (sandbox.audit_records[-1].get("extra") or {}).get("written_files")
    assert _deep_file_exists(project / "sandbox-output"), "set-up: the cell did not write the deep file"
    listed = any(str(e.get("path", "")).endswith("results.csv") for e in written)
    gaps = [str(e["incomplete"]) for e in written if "incomplete" in e]
    assert listed or gaps, f"the record names no deep file and claims a complete scan: {written}"
    assert listed or any(any(ch.isdigit() for ch in g) for g in gaps), f"how many were passed over is not said: {gaps}"
