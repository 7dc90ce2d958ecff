"""The host's disk guard walks by directory fd and counts held nameless files: what it must not do wrong.

Companions of ``test_outside27_disk_guard`` (which shows a deep tree and held nameless files past the quota
are killed): here the honest side and the host's own cost, judged from the host.

1. An honest sandbox with folders nested past ``PATH_MAX`` under the quota keeps its worker (its state
   survives the next call), and what lies down there stays counted: a later write that takes the folders
   past the quota is killed.
2. A file held open by an unlinked name (``log (deleted)`` in ``/proc/<pid>/fd``) that another link still
   names (a log rotation) is counted once, not as a held file and again by its name.
3. A hostile tree (10 000 nested folders) ends in the fail-closed kill (``MAX_DEPTH``) without the host
   walking all of it (on main: a minute of the guard's CPU), and the host process holds no inotify
   instance or folder fd of the guard after the sandbox closed (the walk holds one per level, bounded).
4. A folder the sandbox renames keeps its watch: the watch, added under the old name, is re-pointed to
   the new one even when the guard's watches are all taken (before: the write events under the new name
   were looked up at the old path, found nothing and were not counted until the periodic walk).
5. All of it, and review 27's reproducers, as uid 65534: the host reads the sandbox's ``/proc/<pid>/fd``
   without root (an unreadable one would kill the sandbox: fail closed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import SandboxCrashedError, disk_guard
from glsandbox_kernel.disk_walk import MAX_DEPTH

from ..conftest import rerun_as_unprivileged
from .test_outside27_common import output_sandbox
from .test_outside27_disk_guard import DEPTH, _deep_blocks, _run, deep_fill

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(300)]

MiB = 1 << 20
QUOTA = 8 * MiB
HOSTILE_DEPTH = 10_000


def remember() -> bool:
    """SANDBOX side: a mark of this worker's state."""
    import builtins

    builtins._glsandbox_deep_mark = True  # type: ignore[attr-defined]
    return True


def remembered() -> bool:
    """SANDBOX side: whether the mark is still there (the worker was not replaced)."""
    import builtins

    return getattr(builtins, "_glsandbox_deep_mark", False)


def held_and_linked(folder: str, size: int) -> int:
    """SANDBOX side (honest, a log rotation): ``size`` bytes in ``log``, linked as ``log.1``, ``log`` unlinked,
    the file kept open (its fd's link reads ``log (deleted)``, though ``log.1`` names it)."""
    import builtins
    import os

    fd = os.open(f"{folder}/log", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"l" * size)
    os.fsync(fd)
    os.link(f"{folder}/log", f"{folder}/log.1")
    os.unlink(f"{folder}/log")
    builtins._glsandbox_held_log = fd  # type: ignore[attr-defined]
    return size


def nested(folder: str, depth: int) -> int:
    """SANDBOX side (hostile): ``depth`` nested folders made by dir fd."""
    import os

    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(fd)
    return depth


def folders_then_rename(folder: str, n: int) -> int:
    """SANDBOX side: a folder ``keep`` first (watched), then ``n`` more (the guard's watches taken)."""
    import os

    os.mkdir(f"{folder}/keep")
    for i in range(n):
        os.mkdir(f"{folder}/f{i:05d}")
    return n


def rename_and_fill(folder: str, total: int, chunk: int) -> int:
    """SANDBOX side: rename ``keep`` to ``moved`` and write ``total`` bytes below the new name."""
    import os

    os.rename(f"{folder}/keep", f"{folder}/moved")
    n = 0
    while n * chunk < total:
        with open(f"{folder}/moved/part-{n:03d}.bin", "wb") as fh:
            fh.write(b"x" * chunk)
            fh.flush()
            os.fsync(fh.fileno())
        n += 1
    return n


def _guard_fds(tmp_path: Path) -> list[str]:
    """HOST side: this process's fds a disk guard holds: inotify instances, folders below ``tmp_path``
    (a count of all fds would move with the warm pool, which refills as sandboxes close)."""
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target == "anon_inode:inotify" or target.startswith(str(tmp_path)):
            held.append(target[:120])
    return held


def _remove_chain(root: Path, name: str) -> None:
    """HOST side: remove a chain of nested ``name`` folders in O(1) fds (shutil.rmtree recurses per level)."""
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while os.path.lexists(root / name):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
            try:
                has_child = os.path.lexists(f"/proc/self/fd/{sub}/{name}")
                if has_child:
                    os.rename(name, "up", src_dir_fd=sub, dst_dir_fd=top)
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=top)
            if has_child:
                os.rename("up", name, src_dir_fd=top, dst_dir_fd=top)
    finally:
        os.close(top)


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_honest_folders_past_path_max_under_the_quota_keep_the_worker_and_stay_counted(
    tmp_path: Path, backend: str
) -> None:
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    with sandbox as sb:
        assert sb.execute(remember)
        files = sb.execute(deep_fill, str(out), DEPTH, 4 * MiB, MiB)
        assert files == 4
        assert sb.execute(remembered), "the worker was replaced after writing 4 MiB under an 8 MiB quota"
        on_disk = _deep_blocks(out)
        assert 4 * MiB <= on_disk <= QUOTA, f"set-up: {on_disk / MiB:.1f} MiB at the bottom"
        more = _run(sb, deep_fill, str(out), 0, 6 * MiB, MiB)  # 6 MiB more at the top: 10 MiB in all
    assert isinstance(more, SandboxCrashedError) and more.reason == "disk_quota", (
        f"{backend}: {on_disk / MiB:.1f} MiB below a path past PATH_MAX and 6 MiB more under an "
        f"{QUOTA / MiB:.0f} MiB quota, and the call returned {more!r}: the deep files were not counted"
    )


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_a_held_file_that_still_has_a_name_is_counted_once(tmp_path: Path, backend: str) -> None:
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    with sandbox as sb:
        got = _run(sb, held_and_linked, str(out), 5 * MiB)
        again = _run(sb, remembered)
    assert got == 5 * MiB and again is False, (
        f"{backend}: one 5 MiB file (named log.1, held open as the unlinked log) under an 8 MiB quota: "
        f"{got!r}, then {again!r}: counted twice"
    )
    assert (out / "log.1").stat().st_size == 5 * MiB


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_a_hostile_deep_tree_is_killed_without_costing_the_host_fds(tmp_path: Path, backend: str) -> None:
    out, sandbox = output_sandbox(tmp_path, backend, 1 << 30)
    before = _guard_fds(tmp_path)
    try:
        with sandbox as sb:
            got = _run(sb, nested, str(out), HOSTILE_DEPTH)
        after = _guard_fds(tmp_path)
    finally:
        _remove_chain(out, "d")
    assert isinstance(got, SandboxCrashedError) and got.reason == "disk_quota", (
        f"{backend}: {HOSTILE_DEPTH} nested folders and the call returned {got!r}"
    )
    assert f"nested more than {MAX_DEPTH} deep" in str(got), got
    assert after == before, f"the host process held the fds {before} before the sandbox and {after} after it"


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_writes_below_a_renamed_folder_are_counted_by_its_watch(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_guard, "RESCAN_S", 3600.0)  # no periodic walk: only the watches count
    quota = 32 * MiB  # the folders' own blocks (4 KiB each on ext4) fit
    out, sandbox = output_sandbox(tmp_path, backend, quota)
    with sandbox as sb:
        assert sb.execute(folders_then_rename, str(out), disk_guard.MAX_WATCHES + 10) == disk_guard.MAX_WATCHES + 10
        got = _run(sb, rename_and_fill, str(out), 2 * quota, 4 * MiB)
    on_disk = sum(p.stat().st_size for p in (out / "moved").iterdir())
    assert isinstance(got, SandboxCrashedError) and got.reason == "disk_quota", (
        f"{backend}: {on_disk / MiB:.1f} MiB written below a renamed folder under a {quota / MiB:.0f} MiB quota "
        f"and the call returned {got!r}: its watch still named the old path"
    )


@pytest.mark.unprivileged
def test_deep_and_held_files_as_an_unprivileged_user() -> None:
    """As uid 65534 (BASIC shares the host's uid; the host reads the sandbox's fds without root): the tests
    above and review 27's disk guard reproducers, again."""
    here = Path(__file__)
    proc = rerun_as_unprivileged(
        str(here.parent / "test_outside27_disk_guard.py"),
        str(here),
        "-rs",
        "-k",
        "not unprivileged_user",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
