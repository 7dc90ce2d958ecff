"""Outside review 28: the disk guard's watch cap (``MAX_WATCHES``) leaves folders past it to the periodic walk.

Severity: medium. ``DiskGuard._walk`` adds an inotify watch to at most ``MAX_WATCHES`` folders
(``min(4096, max_user_watches // 16)``); a folder past it is "counted by the periodic walk only". But
``settle()`` at a call's end only drains events and re-reads sparse files: it never walks. So a cell
that first makes 4 200 empty folders in ``sandbox-output/`` (cheap, far below ``MAX_ENTRIES``) and then
writes into the last one sends no event at all: the call that put five times the quota on the host's
disk returns its value (the next periodic walk kills the idle worker later, the bytes already there).
The README names the write-then-kill window (0.25-3 MiB) and the PATH_MAX / nameless-file limits, not
this one.

Judged from the host: the blocks below the output folder when the call returned, against quota + slack;
the call must fail with ``SandboxCrashedError(reason="disk_quota")``.

Suggested fix: at a call's end walk the folders that hold no watch (or the whole tree when any folder is
unwatched), or refuse (fail closed, as ``MAX_ENTRIES`` does) once the watch cap is reached.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import OSSandbox, SandboxCrashedError
from glsandbox_kernel.disk_guard import MAX_WATCHES

from .test_outside27_common import output_sandbox

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(300)]

MiB = 1 << 20
QUOTA = 32 * MiB  # the folders themselves take 4 KiB each (16.4 MiB)
SLACK = 32 * MiB  # the kill comes after the crossing (README: measured up to 12.4 MiB on a loaded host)
TOTAL = 160 * MiB


def many_folders(folder: str, count: int) -> int:
    """SANDBOX side: ``count`` empty folders (more than the guard watches)."""
    import os

    for i in range(count):
        os.mkdir(f"{folder}/d{i:05d}")
    return count


def fill_last(folder: str, count: int, total: int) -> int:
    """SANDBOX side: ``total`` bytes into the last (unwatched) folder, flushed to the host's disk."""
    import os

    with open(f"{folder}/d{count - 1:05d}/big.bin", "wb") as fh:
        for _ in range(total // (4 << 20)):
            fh.write(b"x" * (4 << 20))
        fh.flush()
        os.fsync(fh.fileno())
    return total


def _blocks(root: Path) -> int:
    """HOST side: the disk blocks of every file and folder below ``root`` (what the guard counts: the 4 196
    folders' 16.4 MiB included, else a prompt kill would leave less than the quota in files)."""
    total = 0
    for top, dirs, files in os.walk(root):
        total += sum(os.lstat(os.path.join(top, f)).st_blocks * 512 for f in (*dirs, *files))
    return total


def _run(sb: OSSandbox, fn: object, *args: object) -> object:
    try:
        return sb.execute(fn, *args)
    except SandboxCrashedError as exc:
        return exc


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_writes_into_a_folder_past_the_watch_cap_are_counted_before_the_call_returns(
    tmp_path: Path, backend: str
) -> None:
    count = MAX_WATCHES + 100
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    with sandbox as sb:
        assert _run(sb, many_folders, str(out), count) == count
        got = _run(sb, fill_last, str(out), count, TOTAL)
        on_disk = _blocks(out)
    assert on_disk > QUOTA, f"set-up: {on_disk / MiB:.1f} MiB on disk ({got!r})"
    assert isinstance(got, SandboxCrashedError) and got.reason == "disk_quota", (
        f"{backend}: the call wrote {on_disk / MiB:.1f} MiB into the host's {out} (a folder past the guard's "
        f"{MAX_WATCHES} watches) under a {QUOTA / MiB:.0f} MiB quota and returned {got!r}"
    )
    assert on_disk <= QUOTA + SLACK
