"""The memory limit where no cgroup enforces it: resident memory of the whole tree (HOST side).

Who calls: the session's :class:`~glsandbox_kernel.metrics.Monitor` thread,
on each sample of a worker whose figures come from /proc (BASIC or
NAMESPACE where the host could make no cgroup for the sandbox). :func:`tree_resident` sums what the
sandbox's processes really hold: proportional set size (shared pages split
between the processes that map them, so nothing is counted twice inside the
tree) plus every memfd and shared-memory file an fd of the tree keeps alive
(by inode, once), plus the kernel memory queued in the tree's sockets
(:mod:`glsandbox_kernel.sockmem`, asked only when an fd of the tree is a
socket). Over the limit, the monitor kills the tree and the session
reports :class:`~glsandbox_kernel.exceptions.SandboxMemoryError` with the
limit and the peak.

Address space is not memory: a fresh interpreter with numpy and scipy maps
gigabytes it never touches. Where this guard (or a cgroup) enforces the
limit, RLIMIT_AS is only a generous backstop (:func:`address_space_backstop`).
"""

from __future__ import annotations

import os

from .sockmem import DiagSockets, netns_of

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def address_space_backstop(limit: int | None) -> int | None:
    """RLIMIT_AS where the outside guard enforces ``limit``: far above what any resident use needs."""
    if limit is None:
        return None
    return max(4 * limit, limit + 4 * 1024 * 1024 * 1024)


def _field_kb(data: bytes, name: bytes) -> int | None:
    i = data.find(b"\n" + name + b":")
    if i < 0:
        return None
    j = i + len(name) + 2
    return int(data[j : data.index(b"kB", j)]) * 1024


def _pss(pid: int) -> int | None:
    """Proportional anonymous + shared memory of ``pid`` (file-backed pages, i.e. the mapped
    interpreter and libraries, are page cache, not the sandbox's memory)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            data = b"\n" + fh.read(8192)
        anon, shmem = _field_kb(data, b"Pss_Anon"), _field_kb(data, b"Pss_Shmem")
        if anon is not None:
            return anon + (shmem or 0)
        pss = _field_kb(data, b"Pss")
        if pss is not None:
            return pss
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _held_shared_memory(pid: int, seen: set[tuple[int, int]], sockets: set[int]) -> int:
    """Bytes of memfds and /dev/shm files an fd of ``pid`` holds (each inode once across the tree);
    the inodes of its sockets are added to ``sockets``."""
    total = 0
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return 0
    for name in names:
        try:
            target = os.readlink(f"{base}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            sockets.add(int(target[8:-1]))
            continue
        if not (target.startswith("/memfd:") or target.startswith("/dev/shm/")):
            continue
        try:
            st = os.stat(f"{base}/{name}")
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += st.st_blocks * 512
    return total


def high_water_without_files(pid: int | None) -> int | None:
    """The worker's peak resident memory (VmHWM) less its file-backed pages now (RssFile), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            data = b"\n" + fh.read(8192)
        hwm, files = _field_kb(data, b"VmHWM"), _field_kb(data, b"RssFile")
    except (OSError, ValueError):
        return None
    if hwm is None:
        return None
    return max(0, hwm - (files or 0))


def tree_resident(pids: list[int], diag: DiagSockets | None = None) -> int | None:
    """Resident memory of the processes ``pids`` together (anonymous and shared PSS + held memfd/shm,
    and with ``diag`` their sockets' buffers), or None if none was readable.

    The sockets are asked about only where some are: an fd of the tree names one, or a process
    is in a network namespace of its own (the sandbox's; any socket there is the tree's)."""
    total = 0
    readable = False
    seen: set[tuple[int, int]] = set()
    spaces: dict[tuple[int, int], tuple[int, set[int]]] = {}
    for pid in pids:
        pss = _pss(pid)
        if pss is None:
            continue
        readable = True
        sockets: set[int] = set()
        total += pss + _held_shared_memory(pid, seen, sockets)
        if diag is None:
            continue
        netns = netns_of(pid)
        if netns is not None and (sockets or diag.foreign(netns)):
            spaces.setdefault(netns, (pid, set()))[1].update(sockets)
    if not readable:
        return None
    if spaces and diag is not None:
        total += diag.charged(spaces)
    return total
