"""Outside review 27: the host's disk guard (``disk_guard.py``) counts paths, not the disk a sandbox holds.

Severity: high (deep, held) / low (hard links). ``disk_quota_bytes`` is now documented to bound the host
folders a sandbox writes (``sandbox-output/``, a writable project, ``writable_paths``): the guard counts
``st_blocks`` per *path* it can name (inotify on each folder, ``os.lstat``/``os.scandir`` of full paths
in ``DiskGuard._walk``/``_count``). Four ways the count and the host's disk part:

1. **Deep** (evades): the cell makes a chain of folders by dir fd until the full path passes PATH_MAX
   (as review 26 did against the written-files scan) and writes far past the quota at the bottom.
   The guard's ``os.lstat``/``os.scandir``/``inotify_add_watch`` of that path fail with ENAMETOOLONG
   and ``_count`` reads the failure as "0 bytes" (``st = None``), ``_walk`` as "nothing below":
   nothing is counted, no watch is added, the call succeeds and the bytes stay on the host's disk.
2. **Held** (evades): the cell writes into a file it unlinked at once (or an ``O_TMPFILE``, which
   never had a name) and keeps the descriptor (a module global survives the call). The watch is set
   with ``IN_EXCL_UNLINK`` and an unnamed file is in no folder: no event, no walk finds it. The
   blocks stay allocated on the host's filesystem while the worker lives (a kernel session: hours).
3. **Hard links** (misjudges an honest sandbox): ``_sizes`` is keyed by path, so every link of one
   inode counts its blocks again; a cell that keeps a 5 MiB result and two hard-linked copies
   (``cp -al`` / ``os.link`` snapshots, ``git clone`` of a local repo) under an 8 MiB quota is
   killed as if it wrote 15 MiB, though the host's disk took 5.
4. **mmap** (overshoot; severity medium): a sparse file filled through a mapping kept open sends no
   event (``settle()`` at the call's end drains events only): the call that put 8x the quota on the
   host's disk returns its value; the next periodic walk (``RESCAN_S``, or 20x the last walk's time,
   which a sandbox stretches with many entries) kills it later, the bytes already there (see the test).

Fixed since: the guard walks and watches by directory fd (``disk_walk.py``: depth does not matter, at most
``MAX_DEPTH`` levels, fail closed past it), and counts the nameless files the sandbox's processes hold open
from their ``/proc/<pid>/fd`` links that read ``(deleted)`` (1, 2: the sandbox is killed at the quota); hard
links count once (3); files with holes are re-read at each call's end (4).

How judged, from the host only: (1) the file at the bottom of the chain reached fd by fd, its
``st_blocks``; (2) ``/proc/<worker pid>/fd/*`` of the sandbox's processes (``sb.worker_pids()``), the
blocks of every regular file on the output folder's filesystem; (3) the distinct inodes below the
folder. (1) and (2) expect ``SandboxCrashedError(reason="disk_quota")`` or at most quota + slack on
the host; (3) expects the call to succeed.

Suggested fix: count inodes, not paths: key ``_sizes`` by ``(st_dev, st_ino)`` (a link adds
nothing), walk by directory fd (``os.open(name, dir_fd=...)`` + ``os.scandir(fd)``, ``os.stat(...,
dir_fd=..., follow_symlinks=False)``) so depth does not matter, treat any error but ENOENT as
uncountable (fail closed, as MAX_ENTRIES does), and at each rescan add the blocks of the regular
files the sandbox's processes hold open (``/proc/<pid>/fd``, on the roots' ``st_dev``) that no
counted inode accounts for (unlinked or ``O_TMPFILE``). A filesystem project quota (XFS/ext4 prjquota)
would hold the writes instead of following them.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import OSSandbox, SandboxCrashedError

from .test_outside27_common import output_sandbox

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(300)]

MiB = 1 << 20
QUOTA = 8 * MiB
#: What may reach the host past the quota (the guard's wake-up; the harden test allows the same).
SLACK = 8 * MiB
TOTAL = 40 * MiB
CHUNK = 4 * MiB
DEPTH = 24  # 24 x 201 bytes: past PATH_MAX (4096) below the output folder


def deep_fill(folder: str, depth: int, total: int, chunk: int) -> int:
    """SANDBOX side: a chain of ``depth`` folders made by dir fd, then ``total`` bytes in files at the bottom."""
    import os

    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d" * 200, dir_fd=fd)
        sub = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    data, n = b"x" * chunk, 0
    while n * chunk < total:
        out = os.open(f"part-{n:03d}.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, data)
        os.fsync(out)
        os.close(out)
        n += 1
    os.close(fd)
    return n


def held_fill(folder: str, total: int, chunk: int, tmpfile: bool) -> int:
    """SANDBOX side: ``total`` bytes in files with no name (unlinked at once, or O_TMPFILE), kept open."""
    import builtins
    import os

    kept = []
    data = b"x" * chunk
    while len(kept) * chunk < total:
        if tmpfile:
            fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600)
        else:
            path = f"{folder}/held-{len(kept)}.bin"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.unlink(path)
        os.write(fd, data)
        os.fsync(fd)
        kept.append(fd)
    builtins._glsandbox_review27_kept = kept  # survives the call: the worker keeps the blocks
    return len(kept)


def linked_copies(folder: str, size: int, copies: int) -> int:
    """SANDBOX side (honest): one result file and ``copies`` hard-linked snapshots of it."""
    import os

    with open(f"{folder}/result.bin", "wb") as fh:
        fh.write(b"r" * size)
        fh.flush()
        os.fsync(fh.fileno())
    for i in range(copies):
        os.makedirs(f"{folder}/snap-{i}", exist_ok=True)
        os.link(f"{folder}/result.bin", f"{folder}/snap-{i}/result.bin")
    return size


def _run(sb: OSSandbox, fn: object, *args: object) -> object:
    try:
        return sb.execute(fn, *args)
    except SandboxCrashedError as exc:
        return exc


def _deep_blocks(root: Path) -> int:
    """HOST side: the blocks of the files at the bottom of the chain, reached fd by fd."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEPTH):
            sub = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        return sum(os.stat(e.name, dir_fd=fd, follow_symlinks=False).st_blocks * 512 for e in os.scandir(fd))
    except FileNotFoundError:
        return 0
    finally:
        os.close(fd)


def _held_blocks(pids: list[int], dev: int) -> int:
    """HOST side: the blocks of the regular files on ``dev`` that the sandbox's processes hold open."""
    seen: dict[tuple[int, int], int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_dev == dev:
                seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_files_below_path_max_are_counted_against_the_disk_quota(tmp_path: Path, backend: str) -> None:
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    with sandbox as sb:
        got = _run(sb, deep_fill, str(out), DEPTH, TOTAL, CHUNK)
    on_disk = _deep_blocks(out)
    assert on_disk >= CHUNK, f"set-up: the chain holds {on_disk / MiB:.1f} MiB ({got!r})"  # killed at the quota
    assert isinstance(got, SandboxCrashedError) and got.reason == "disk_quota", (
        f"{backend}: {on_disk / MiB:.1f} MiB below a path past PATH_MAX in the host's {out}, quota "
        f"{QUOTA / MiB:.0f} MiB, and the call returned {got!r}: the guard counted none of it"
    )
    assert on_disk <= QUOTA + SLACK, f"the host's folder holds {on_disk / MiB:.1f} MiB past the quota"


@pytest.mark.parametrize("tmpfile", [False, True], ids=["unlinked", "o_tmpfile"])
@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_files_held_open_without_a_name_are_counted_against_the_disk_quota(
    tmp_path: Path, backend: str, tmpfile: bool
) -> None:
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    with sandbox as sb:
        got = _run(sb, held_fill, str(out), TOTAL, CHUNK, tmpfile)
        held = _held_blocks(sb.worker_pids, os.stat(out).st_dev) if not isinstance(got, Exception) else 0
    if isinstance(got, SandboxCrashedError) and got.reason == "disk_quota":
        return
    assert held <= QUOTA + SLACK, (
        f"{backend}: the sandbox holds {held / MiB:.1f} MiB of the host's disk in nameless files on {out}'s "
        f"filesystem (measured from /proc/<pid>/fd), quota {QUOTA / MiB:.0f} MiB, and the call returned {got!r}"
    )
    assert held > 0 or isinstance(got, Exception), f"set-up: nothing held open ({got!r})"


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_hard_links_of_one_file_are_counted_once(tmp_path: Path, backend: str) -> None:
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    size = 5 * MiB
    with sandbox as sb:
        got = _run(sb, linked_copies, str(out), size, 2)
    inodes = {}
    for root, _dirs, files in os.walk(out):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            inodes[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    on_disk = sum(inodes.values())
    assert on_disk <= QUOTA, f"set-up: {on_disk / MiB:.1f} MiB on disk"
    assert got == size, (
        f"{backend}: the host's disk took {on_disk / MiB:.1f} MiB (distinct inodes) under an "
        f"{QUOTA / MiB:.0f} MiB quota, yet the call failed: {got!r} (each hard link counted again)"
    )


def mmap_fill(folder: str, files: int, size: int) -> int:
    """SANDBOX side: ``files`` sparse files of ``size`` bytes (ftruncate: no blocks), filled through ``mmap``, kept open."""
    import builtins
    import mmap
    import os

    kept = []
    for i in range(files):
        fd = os.open(f"{folder}/mapped-{i}.bin", os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, size)
        m = mmap.mmap(fd, size)
        m[:] = b"m" * size
        m.flush()  # msync: on the host's disk now
        kept.append((fd, m))  # not closed: a close would send IN_CLOSE_WRITE
    builtins._glsandbox_review27_mapped = kept
    return files


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_writes_through_mmap_are_counted_before_the_call_returns(tmp_path: Path, backend: str) -> None:
    """4. **mmap** (overshoot, then a kill between calls): ``ftruncate`` makes a sparse file (the one
    ``IN_MODIFY`` it sends counts 0 blocks), ``mmap`` writes send no event at all. ``settle()`` at the
    call's end only drains events, so the call that wrote 8x the quota returns its value; the periodic walk
    (``RESCAN_S`` or 20x the last walk: a sandbox with many entries stretches it) finds the blocks later.
    Judged: the host folder's blocks when the call returned, against quota + slack; the call must fail
    with ``reason="disk_quota"``. Fix: at a call's end re-stat every counted file (or walk again), not
    only the pending events."""
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    with sandbox as sb:
        got = _run(sb, mmap_fill, str(out), 2, 32 * MiB)
        on_disk = sum(os.lstat(p).st_blocks * 512 for p in out.iterdir())
    assert on_disk > QUOTA, f"set-up: {on_disk / MiB:.1f} MiB on disk ({got!r})"
    assert isinstance(got, SandboxCrashedError) and got.reason == "disk_quota", (
        f"{backend}: the call wrote {on_disk / MiB:.1f} MiB through mmap into the host's {out} under an "
        f"{QUOTA / MiB:.0f} MiB quota and returned {got!r}"
    )
