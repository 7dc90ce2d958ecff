"""``disk_quota_bytes`` over the host folders a sandbox writes: counted outside, the sandbox killed past it (HOST side).

Who calls: the session's :class:`~glsandbox_kernel.metrics.Monitor` starts one
:class:`DiskGuard` per worker (:meth:`DiskGuard.watch`, at the worker's first
call) and asks it at each call's end (:meth:`DiskGuard.settle`, through
:func:`disk_overrun`); :func:`~glsandbox_kernel.results.crash_error` names it
when it killed the tree. Everything here runs in the host process, over the
host's own view of the folders; nothing the sandbox says is used.

The sandbox's scratch (private ``/tmp`` and working folder) is a tmpfs of the
quota where the backend can size one (NAMESPACE, CHROOT, CONTAINER; BASIC as
root); the host folders it may write (``sandbox-output/`` of a read-only
project, a writable project, ``writable_paths``) are bind mounts or Landlock
grants of the host's own filesystem, which no mount option sizes. So the
guard counts them: the disk blocks (``st_blocks``: what fills the host's disk;
a sparse file's holes are free) of every file and folder below them, plus
BASIC's host scratch folder, less what they held when the worker started; past
``disk_quota_bytes`` it kills every process of the sandbox and the call fails
with ``SandboxCrashedError(reason="disk_quota")``. RLIMIT_FSIZE
(``max_file_size_bytes``) still stops any one file inside, at the write.

Counted as it happens: an inotify watch on every folder below the roots
(``IN_MODIFY`` comes with each ``write(2)``), a thread that re-reads the files
named in each batch of events, a full walk every :data:`RESCAN_S` and after
a queue overflow (writes through ``mmap`` send no event), and a drain of the
pending events at each call's end; past :data:`MAX_WATCHES` folders, watches move to where the
sandbox writes and the folders without one are re-read often and at each call's end (:mod:`.disk_unwatched`). Walks and watches go by directory fd
(:mod:`.disk_walk`), so a file below a path longer than ``PATH_MAX`` is counted
as any other, and a renamed folder's watch is re-pointed to its new name. Files
held open with no name (unlinked, ``O_TMPFILE``) are counted from the fd tables
of the sandbox's own processes (``/proc/<pid>/fd``, on the roots' filesystems,
each inode once), read at each walk, after write events and at a call's end unless none is held and no event came since. The budget is the session's, not one
worker's: a worker started after a kill (or a restart) finds what the last
one wrote still counted, and is killed at its first call while the folders
stay over the quota (removing files there from the host frees the budget). **Known limit**: the count follows the
writes, it does not hold them: what the sandbox writes between crossing the
quota and the kill (the guard thread's wake-up, a few milliseconds; measured
in ``test_harden_disk_quota_host_folders``: 0.25-3 MiB; gVisor's sentry, slower to
die, 19-31 MiB) reaches the host. More than
:data:`MAX_ENTRIES` entries below the roots, folders nested more than
:data:`~.disk_walk.MAX_DEPTH` deep, more than :data:`~.disk_walk.MAX_HELD_FDS`
open fds cannot be counted: the sandbox is killed then too (fail closed). A sandbox
process whose fds the host may not read is passed over (its nameless files uncounted).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import stat
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from . import disk_walk
from .disk_unwatched import MAX_ENTRIES, UNWATCHED_S, UnwatchedFolders
from .disk_walk import MAX_DEPTH, Uncountable
from .exceptions import SandboxCrashedError
from .units import fmt_bytes

log = logging.getLogger("glsandbox.disk_guard")

#: A full walk of the roots this often, or 20 times as long as the last walk took (events missed: mmap writes,
#: a watch limit reached).
RESCAN_S = 1.0


def _max_watches() -> int:
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as fh:
            limit = int(fh.read())
    except (OSError, ValueError):
        limit = 8192
    return max(64, min(4096, limit // 16))


#: inotify watches one guard holds at most (they are the host user's, ``max_user_watches``, and each pins a
#: kernel inode): past it a folder the sandbox makes or writes in takes the watch of the least recently active
#: one, and the folders without a watch are re-read every :data:`UNWATCHED_S` and at each call's end.
MAX_WATCHES = _max_watches()

_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_FROM, _IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
_IN_CREATE, _IN_DELETE, _IN_Q_OVERFLOW, _IN_IGNORED, _IN_ISDIR = 0x100, 0x200, 0x4000, 0x8000, 0x40000000
_IN_ONLYDIR = 0x01000000
#: Added through ``/proc/self/fd/N`` of a folder the walk opened ``O_NOFOLLOW`` (any depth; no IN_DONT_FOLLOW:
#: the fd's link is what must be followed). No IN_EXCL_UNLINK: a write to an unlinked or ``O_TMPFILE`` file
#: still sends IN_MODIFY (named by its old name or ``#NNN``), which asks for a look at the held files.
_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_ONLYDIR
_EVENT = struct.Struct("iIII")
#: The sandbox's open nameless files are read after a write event at most this often (or 20x the last reading).
HELD_EVERY_S = 0.02


class DiskGuard(UnwatchedFolders):
    """HOST side: the bytes the sandbox added to its host folders, with its tree killed past ``quota``."""

    def __init__(self, roots: tuple[str, ...], quota: int, masked: Callable[[str], bool] | None = None) -> None:
        self.roots = roots
        self.quota = quota
        #: names hidden from the sandbox (``masked_names``): what of them the first walk finds is the host's, not
        #: counted (the user's own ``git fetch`` into a masked ``.git`` of a writable project is no sandbox write)
        self._is_masked = masked or (lambda _name: False)
        self._masked: dict[str, tuple[int, int]] = {}  # path -> (st_dev, st_ino) of what the first walk found
        #: (quota, bytes added) once the guard killed the tree; a reason as the figure when it could not count
        self.exceeded: tuple[int, int | str] | None = None
        self._worker: Any = None
        self._kill: Callable[[Any], None] | None = None
        self._lock = threading.Lock()
        self._paths: dict[str, tuple[int, int]] = {}  # counted path -> its inode (st_dev, st_ino)
        self._sizes: dict[tuple[int, int], int] = {}  # inode -> its blocks in bytes: hard links counted once
        self._links: dict[tuple[int, int], int] = {}  # inode -> how many counted paths name it
        self._kids: dict[str, set[str]] = {}  # folder -> its counted entries: a deletion drops one subtree
        #: regular files with holes (st_size past their blocks): writes through ``mmap`` fill holes and send no
        #: event, so :meth:`settle` re-reads these (a file without holes gains no block without a write event)
        self._sparse: set[str] = set()
        self._first_walk = False
        self._total = 0
        self._base: int | None = None  # what the folders held when the session's first worker started
        #: files with no name the sandbox's processes hold open on the roots' filesystems: inode -> blocks
        self._held: dict[tuple[int, int], int] = {}
        self._held_next = 0.0
        #: batches of inotify events taken so far, and their number at the last fd-table reading: a call's end
        #: reads the fd tables again only when an event came since (or some file is held, or a folder unwatched)
        self._events = 0
        self._held_at = -1
        self._devs: set[int] = set()  # st_dev of the roots
        self._wds: dict[int, str] = {}  # watch -> the folder it names now (a rename's walk re-points it)
        self._wd_inode: dict[int, tuple[int, int]] = {}  # watch -> its folder's inode
        self._inode_wd: dict[tuple[int, int], int] = {}  # watched folder's inode -> its watch
        self._unwatched: set[str] = set()  # counted folders past MAX_WATCHES: re-read by _walk_unwatched
        self._unwatched_next = 0.0
        self._evicting: str | None = None  # a folder the sandbox just made: it takes a quiet folder's watch
        self._fd = -1
        self._stop: tuple[int, int] | None = None  # a pipe that wakes the thread to end
        self._thread: threading.Thread | None = None
        self._libc: Any = None

    @property
    def used(self) -> int:
        """Bytes the sandbox added since the session's first worker started (negative: it removed more); its
        open nameless files included (a held inode that has a counted name again is counted once)."""
        held = sum(n for key, n in self._held.items() if key not in self._sizes)
        return self._total + held - (self._base or 0)

    def watch(self, worker: Any, kill: Callable[[Any], None]) -> None:
        """Start counting for ``worker`` (nothing when it is the one counted already); ``kill(worker)`` past the quota."""
        thread = self._thread
        if worker is self._worker and self.exceeded is None and thread is not None and thread.is_alive():
            return  # counting this worker already (a killed one's thread has ended: counted afresh)
        self.close()
        self._worker, self._kill, self.exceeded, self._uncountable = worker, kill, None, None
        scratch = getattr(worker, "workdir", None)  # BASIC's host scratch folder (a tmpfs of the quota as root)
        roots = (*self.roots, *([scratch] if scratch else []))
        self._roots_now = tuple(dict.fromkeys(os.path.normpath(r) for r in roots))
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        with self._lock:
            self._first_walk = self._base is None  # the masked paths are those found when the session started
            self._rescan()
            self._first_walk = False
            if self._base is None:  # one budget for the session: a replaced worker gets no fresh quota
                self._base = self._total
        self._stop = os.pipe()
        self._thread = threading.Thread(target=self._run, args=(worker, self._stop[0]), name="glsandbox-disk-guard")
        self._thread.daemon = True
        self._thread.start()
        self._check(worker)  # still over the quota from an earlier worker: killed before it writes more

    def settle(self) -> None:
        """At a call's end: take the events pending now, so what the call wrote is counted before it returns."""
        if self._thread is None:
            return
        with self._lock:
            self._take_events()
            try:
                for path in list(self._sparse):
                    self._count(path)
            except Uncountable as exc:  # then killed at the check
                self._uncountable = self._uncountable or str(exc)
            if self._unwatched:  # what no watch reports: re-read before the call returns
                self._walk_unwatched()
            if self._held_may_change():
                self._read_held()
        self._check(self._worker)

    def _held_may_change(self) -> bool:
        """Under the lock: whether the sandbox may hold a nameless file the last fd-table reading did not see.

        Not when that reading found none held and no inotify event came since: a file loses its name by an
        unlink (``IN_DELETE``) and an ``O_TMPFILE`` gains blocks by writes (``IN_MODIFY``), both seen by the
        watch on its folder (each counted folder has one or is in ``_unwatched``). A held file (its folder may be
        gone, with its watch; ``mmap`` writes send nothing), a folder without a watch or no inotify: read."""
        return bool(self._held) or bool(self._unwatched) or self._fd < 0 or self._held_at != self._events

    def close(self) -> None:
        """Stop counting (the worker gone or replaced, the session closed)."""
        thread, stop = self._thread, self._stop
        self._thread, self._stop, self._worker = None, None, None
        if stop is not None:
            os.write(stop[1], b"x")
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        with self._lock:  # a thread still walking (past the join's wait) holds it
            if stop is not None:
                os.close(stop[0])
                os.close(stop[1])
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._wds.clear()
            self._wd_inode.clear()
            self._inode_wd.clear()
            self._held.clear()
            self._forget()

    # -- the guard thread ---------------------------------------------------------------------------------

    def _run(self, worker: Any, stop_fd: int) -> None:
        fd, last, every = self._fd, time.monotonic(), RESCAN_S
        while self.exceeded is None:
            wait = every - (time.monotonic() - last)
            if self._unwatched:
                wait = min(wait, self._unwatched_next - time.monotonic())
            try:
                ready = select.select([f for f in (fd, stop_fd) if f >= 0], [], [], max(0.0, wait))[0]
            except (OSError, ValueError):
                return
            if stop_fd in ready:
                return
            with self._lock:
                wrote = fd in ready and self._take_events()
                over = self.used > self.quota  # then killed first: no reading that delays it
                if wrote and not over and time.monotonic() >= self._held_next:
                    self._read_held()
                if self._unwatched and not over and time.monotonic() >= self._unwatched_next:
                    self._walk_unwatched()
                if not over and time.monotonic() - last >= every:
                    took = time.monotonic()
                    self._rescan()
                    last = time.monotonic()
                    every = max(RESCAN_S, 20 * (last - took))  # a large folder's walk: at most 5% of a core
            self._check(worker)

    def _check(self, worker: Any) -> None:
        if self.exceeded is None and (self.used > self.quota or self._uncountable) and worker is self._worker:
            self.exceeded = (self.quota, self._uncountable or self.used)
            log.warning("sandbox over its disk quota (%s): killing it", self.exceeded)
            if self._kill is not None:
                self._kill(worker)

    _uncountable: str | None = None  # why the folders could not be counted (the sandbox is killed for it)
    _roots_now: tuple[str, ...] = ()

    def _read_held(self) -> None:
        """Under the lock: the nameless files the sandbox's processes hold open now (:func:`.disk_walk.held_files`)."""
        took = time.monotonic()
        worker, self._held_at = self._worker, self._events
        try:
            pids = worker.host_pids() if worker is not None and self._devs else []  # no guarded filesystem: none
            self._held = disk_walk.held_files(pids, self._devs)
        except Uncountable as exc:
            self._uncountable = self._uncountable or str(exc)
        except OSError:
            pass  # the worker gone: its files with it
        self._held_next = time.monotonic() + max(HELD_EVERY_S, 20 * (time.monotonic() - took))

    def _take_events(self) -> bool:
        """Under the lock: read every pending event and re-count what each names; whether one was a write."""
        wrote = False
        while True:
            if self.used > self.quota:  # killed at the check now; the rest of the queue can wait
                return wrote
            try:
                data = os.read(self._fd, 65536)
            except OSError:  # BlockingIOError: none left
                return wrote
            self._events += 1
            off, done = 0, set[str]()  # paths counted in this batch: a later write sends a new event
            while off + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, off)
                name = data[off + _EVENT.size : off + _EVENT.size + length].split(b"\0", 1)[0]
                off += _EVENT.size + length
                if mask & _IN_Q_OVERFLOW:
                    self._rescan()
                    continue
                if mask & _IN_IGNORED:
                    self._wds.pop(wd, None)
                    inode = self._wd_inode.pop(wd, None)
                    if inode is not None and self._inode_wd.get(inode) == wd:
                        del self._inode_wd[inode]
                    continue
                base = self._wds.pop(wd, None)
                if base is None:
                    continue
                self._wds[wd] = base  # the most recently active now: the last to give its watch away
                wrote = wrote or bool(mask & _IN_MODIFY)
                path = f"{base}/{os.fsdecode(name)}" if name else base
                counts = not mask & (_IN_DELETE | _IN_MOVED_FROM | _IN_CREATE | _IN_MOVED_TO | _IN_ISDIR)
                if counts and path in done:
                    continue
                if counts:
                    done.add(path)
                else:
                    done.clear()
                self._event(path, mask)

    def _event(self, path: str, mask: int) -> None:
        try:
            self._one_event(path, mask)
        except Uncountable as exc:  # then killed at the next check
            self._uncountable = self._uncountable or str(exc)

    def _one_event(self, path: str, mask: int) -> None:
        if mask & (_IN_DELETE | _IN_MOVED_FROM):
            self._drop(path)
            return
        if mask & _IN_ISDIR and mask & (_IN_CREATE | _IN_MOVED_TO):
            self._evicting = path
            try:
                self._walk(path)
            finally:
                self._evicting = None
            return
        self._count(path)

    def _forget(self) -> None:
        self._paths.clear()
        self._sizes.clear()
        self._links.clear()
        self._kids.clear()
        self._sparse.clear()
        self._unwatched.clear()
        self._total = 0

    def _drop(self, path: str) -> None:
        """Under the lock: stop counting ``path`` and what was counted below it (its own subtree only)."""
        parent = self._kids.get(os.path.dirname(path))
        if parent is not None:
            parent.discard(path)
        stack = [path]
        while stack:
            p = stack.pop()
            stack.extend(self._kids.pop(p, ()))
            key = self._paths.pop(p, None)
            self._sparse.discard(p)
            self._unwatched.discard(p)
            if key is None:
                continue
            left = self._links[key] - 1
            if left:
                self._links[key] = left
            else:
                del self._links[key]
                self._total -= self._sizes.pop(key)

    def _count(self, path: str) -> os.stat_result | None:
        """Under the lock: count the entry at ``path`` as it is now (dropped when gone)."""
        try:
            st = disk_walk.lstat(path, self._roots_now)
        except OSError:
            self._drop(path)
            return None
        return st if self._record(path, st) else None

    def _record(self, path: str, st: os.stat_result) -> bool:
        """Under the lock: count ``st`` as the entry at ``path``; False when it is not counted (masked)."""
        key = (st.st_dev, st.st_ino)
        if self._first_walk and path not in self._roots_now and self._is_masked(os.path.basename(path)):
            self._masked[path] = key
        if self._masked.get(path) == key:  # the host's, hidden from the sandbox: not counted, nor below it
            self._drop(path)
            return False
        if self._paths.get(path) != key:
            self._drop(path)  # a new inode at this path (or a first sight): the old one's subtree is gone
            self._paths[path] = key
            self._links[key] = self._links.get(key, 0) + 1
            self._kids.setdefault(os.path.dirname(path), set()).add(path)
        new = st.st_blocks * 512
        if stat.S_ISREG(st.st_mode) and st.st_size > new:
            self._sparse.add(path)
        else:
            self._sparse.discard(path)
        self._total += new - self._sizes.get(key, 0)
        self._sizes[key] = new
        if len(self._paths) > MAX_ENTRIES:
            self._uncountable = self._uncountable or f"more than {MAX_ENTRIES} entries"
            raise Uncountable(self._uncountable)
        return True

    def _rescan(self) -> None:
        """Under the lock: count every entry below the roots again (watches added where missing), and the
        nameless files the sandbox holds open."""
        self._forget()
        try:
            for root in self._roots_now:
                with contextlib.suppress(OSError):
                    self._devs.add(os.lstat(root).st_dev)
                self._walk(root)
        except Uncountable as exc:
            self._uncountable = self._uncountable or str(exc)
        self._read_held()

    def _walk(self, top: str) -> None:
        """Under the lock: count ``top`` and every entry below it, by directory fd (:func:`.disk_walk.walk`)."""
        try:
            fd = disk_walk.open_dir(top, self._roots_now)
        except OSError:  # not a folder (a file or symlink now), gone, or unreadable: counted as what it is
            self._count(top)
            return
        depth = disk_walk.depth_below(top, self._roots_now)
        disk_walk.walk(top, fd, depth, MAX_ENTRIES, self._walked, self._add_watch)

    def _walked(self, path: str, st: os.stat_result) -> bool:
        return self._record(path, st) and stat.S_ISDIR(st.st_mode)

    def _add_watch(self, folder: str, fd: int, st: os.stat_result) -> None:
        """Under the lock: watch the folder open as ``fd`` (at any depth: through ``/proc/self/fd``). A folder
        watched already (renamed: its watch still names the old path) is re-pointed, past the cap too."""
        inode = (st.st_dev, st.st_ino)
        if self._fd < 0:
            return
        full = inode not in self._inode_wd and len(self._wds) >= MAX_WATCHES
        if full and not (folder == self._evicting and self._evict()):
            self._unwatched.add(folder)  # past MAX_WATCHES: re-read by _walk_unwatched
            return
        wd = self._libc.inotify_add_watch(self._fd, f"/proc/self/fd/{fd}".encode(), _MASK)
        if wd < 0:  # the host's watch limit
            self._unwatched.add(folder)
            return
        self._unwatched.discard(folder)
        old = self._wd_inode.get(wd)
        if old is not None and old != inode and self._inode_wd.get(old) == wd:
            del self._inode_wd[old]
        self._wds.pop(wd, None)
        self._wds[wd] = folder
        self._wd_inode[wd] = inode
        self._inode_wd[inode] = wd


def guard_for(config: Any) -> DiskGuard | None:
    """The guard for an :class:`~glsandbox_kernel.config.OSSandboxConfig`: None without a disk quota."""
    from .project import writable_roots
    from .treewalk import mask_matcher

    quota = config.limits.disk_quota_bytes
    if quota is None:
        return None
    return DiskGuard(writable_roots(config), int(quota), mask_matcher(tuple(config.filesystem.masked_names)))


def disk_overrun(monitor: Any) -> SandboxCrashedError | None:
    """HOST side, at a call's end: the error when the guard found the quota passed (it killed the tree)."""
    guard: DiskGuard | None = getattr(monitor, "disk", None)
    if guard is None:
        return None
    guard.settle()
    return disk_error(guard)


def disk_error(guard: DiskGuard | None, returncode: int | None = None) -> SandboxCrashedError | None:
    """HOST side: the error for a tree the guard killed (None when it did not)."""
    if guard is None or guard.exceeded is None:
        return None
    quota, used = guard.exceeded
    where = ", ".join(guard.roots)[:300] or "its host folders"
    if isinstance(used, str):  # fail closed: what it holds is not known to be under the quota
        what = f"the host could not count what the sandbox holds in {where} ({used}) under its disk quota of"
    else:
        what = f"the sandbox wrote {fmt_bytes(used)} (measured outside) to {where}, over its disk quota of"
    return SandboxCrashedError(
        f"{what} {fmt_bytes(quota)}; the worker and every process it started were killed and its state is lost",
        returncode=returncode,
        reason="disk_quota",
        limit=quota,
        measured=None if isinstance(used, str) else used,
    )


__all__ = [
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_WATCHES",
    "UNWATCHED_S",
    "DiskGuard",
    "disk_error",
    "disk_overrun",
    "guard_for",
]
