"""The guarded folders past the disk guard's watch cap: watches moved to where the sandbox writes, the rest re-read
(HOST side).

Who calls: :class:`~glsandbox_kernel.disk_guard.DiskGuard` only (a mixin of it), under its lock, in the host
process. A guard holds at most ``MAX_WATCHES`` inotify watches (each pins a kernel inode of the host user's
``max_user_watches``). Past it, a folder the sandbox makes (an ``IN_CREATE`` event) or one found grown takes
the watch of the least recently active folder; every counted folder without a watch is re-read (its entries,
not below) every :data:`UNWATCHED_S`, or 40 times as long as the last re-reading took (2.5% of a core at
most), and at each call's end, so a call never returns with what such a folder holds uncounted.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from typing import TYPE_CHECKING, Any

from . import disk_walk
from .disk_walk import Uncountable

#: The folders without a watch are re-read this often, or 40 times as long as the last re-reading took.
UNWATCHED_S = 0.01
#: Entries below the roots the guard counts at most; past it the sandbox is killed (fail closed).
MAX_ENTRIES = 200_000


class UnwatchedFolders:
    """HOST side: the :class:`~glsandbox_kernel.disk_guard.DiskGuard` methods for folders past its watch cap."""

    _wds: dict[int, str]
    _wd_inode: dict[int, tuple[int, int]]
    _inode_wd: dict[tuple[int, int], int]
    _paths: dict[str, tuple[int, int]]
    _kids: dict[str, set[str]]
    _unwatched: set[str]
    _unwatched_next: float
    _evicting: str | None
    _roots_now: tuple[str, ...]
    _uncountable: str | None
    _total: int
    _fd: int
    _libc: Any

    if TYPE_CHECKING:  # DiskGuard's own, which these methods call

        def _drop(self, path: str) -> None: ...

        def _count(self, path: str) -> os.stat_result | None: ...

        def _record(self, path: str, st: os.stat_result) -> bool: ...

        def _walk(self, top: str) -> None: ...

        def _add_watch(self, folder: str, fd: int, st: os.stat_result) -> None: ...

    def _evict(self) -> bool:
        """Under the lock: take the watch off the least recently active folder (not a root), which is re-read
        by :meth:`_walk_unwatched` from now on; whether there was one."""
        for wd, folder in self._wds.items():  # noqa: B007 (the wd found is used below)
            if folder not in self._roots_now:
                break
        else:
            return False
        self._libc.inotify_rm_watch(self._fd, wd)
        del self._wds[wd]
        inode = self._wd_inode.pop(wd, None)
        if inode is not None and self._inode_wd.get(inode) == wd:
            del self._inode_wd[inode]
        if folder in self._paths:
            self._unwatched.add(folder)
        return True

    def _walk_unwatched(self) -> None:
        """Under the lock: re-read every counted folder that holds no watch (:meth:`_relist`)."""
        took = time.monotonic()
        try:
            for folder in list(self._unwatched):
                if folder in self._unwatched:  # not dropped by an earlier one's re-reading
                    self._relist(folder)
        except Uncountable as exc:  # then killed at the check
            self._uncountable = self._uncountable or str(exc)
        self._unwatched_next = time.monotonic() + max(UNWATCHED_S, 40 * (time.monotonic() - took))

    def _relist(self, folder: str) -> None:
        """Under the lock: count a folder without a watch and its entries again, not below (a subfolder holds a
        watch or is re-read itself; a new one is walked); a gone entry is dropped. A folder that grew takes the
        watch of the least recently active one, so what the sandbox writes on there sends events."""
        before = self._total
        try:
            st, entries = disk_walk.listing(folder, self._roots_now, MAX_ENTRIES)
        except OSError:  # gone, or a file or symlink now
            self._drop(folder)
            self._count(folder)
            return
        if self._paths.get(folder) != (st.st_dev, st.st_ino):  # another folder at this name: all of it
            self._walk(folder)
            return
        if not self._record(folder, st):
            return
        seen = set[str]()
        for name, est in entries:
            path = f"{folder}/{name}"
            seen.add(path)
            if not stat.S_ISDIR(est.st_mode):
                self._record(path, est)
            elif self._paths.get(path) != (est.st_dev, est.st_ino):
                self._walk(path)
        for gone in self._kids.get(folder, set()) - seen:
            self._drop(gone)
        if self._total > before:
            with contextlib.suppress(OSError):
                fd = disk_walk.open_dir(folder, self._roots_now)
                try:
                    self._evicting = folder
                    self._add_watch(folder, fd, os.fstat(fd))
                finally:
                    self._evicting = None
                    os.close(fd)


__all__ = ["MAX_ENTRIES", "UNWATCHED_S", "UnwatchedFolders"]
