"""Evidence of what a call wrote: files created or changed in the sandbox's writable folders (HOST side).

Who calls: :class:`~glsandbox_kernel.sandbox.OSSandbox` asks
:meth:`WriteTracker.begin` before each call or cell and
:meth:`WriteTracker.end` after it; the list goes into the call's audit
record as ``written_files`` (path, size, SHA-256), so a notebook proves which
cell produced which results file. The sandbox also writes between calls (a
thread a cell left running, a widget callback, an inspection): each call's
closing scan is kept, and the next call's opening scan (taken anyway) is
compared with it, so what changed in between is listed in the next call's
record marked ``"when": "between calls"``; :meth:`WriteTracker.final`
(at close, the worker stopped) lists what changed after the last call for
the ``session_end`` record. No scan more per call than before.

Trusted: the scan runs in the host process over the host's own view of the
folders, after the call ended; nothing the sandbox says about its files is
used. Masked names (secrets) are never read or hashed. Bounded: at most
``max_entries`` directory entries are visited and ``max_hash_bytes`` hashed
per call; what is left over is recorded as such, never silently dropped.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from typing import Any

from .treewalk import TreeWalk, mask_matcher

#: (size, mtime_ns, ctime_ns, inode) of one regular file.
Stamp = tuple[int, int, int, int]


@dataclass
class Snapshot:
    """The stamps of every regular file below the tracked folders at one moment."""

    files: dict[str, Stamp]
    complete: bool
    #: folders and files the scan could not read (a path past PATH_MAX, no permission): not compared
    skipped: int = 0


class WriteTracker:
    """Finds files created or changed below ``roots`` between two moments (HOST side)."""

    def __init__(
        self,
        roots: tuple[str, ...],
        masked_names: tuple[str, ...] = (),
        *,
        max_entries: int = 100_000,
        max_hash_bytes: int = 1 << 30,
    ) -> None:
        self.roots = tuple(os.path.realpath(r) for r in roots)
        self.masked_names = masked_names
        self.max_entries = max_entries
        self.max_hash_bytes = max_hash_bytes
        self._last: Snapshot | None = None  # the latest scan whose changes are in some record
        self._lock = threading.Lock()  # orders the scans that move ``_last`` (calls are serial anyway)

    def begin(self) -> tuple[Snapshot, list[dict[str, Any]]]:
        """Caller's thread, before a call: its opening snapshot, and what changed since the last call ended.

        The changes between calls come marked ``"when": "between calls"`` (the sandbox wrote them while
        no call ran: a thread, a widget callback); empty for the session's first call.
        """
        with self._lock:
            now, last = self.snapshot(), self._last
            self._last = now
        return now, ([] if last is None else self.diff(last, now, when="between calls"))

    def end(self, before: Snapshot) -> list[dict[str, Any]]:
        """Caller's thread, after a call: what changed since ``before``; the closing scan is kept for the next call."""
        with self._lock:
            now = self._last = self.snapshot()
        return self.diff(before, now)

    def final(self) -> list[dict[str, Any]] | None:
        """At close, the worker stopped: what changed after the last call (``"when": "after the last call"``).

        None when no call ran (no sandbox code did: nothing to compare).
        """
        with self._lock:
            last = self._last
            if last is None:
                return None
            now = self._last = self.snapshot()
        return self.diff(last, now, when="after the last call")

    def snapshot(self) -> Snapshot:
        """Stamps of every regular file below the roots (symlinks are not followed)."""
        files: dict[str, Stamp] = {}
        masked = mask_matcher(tuple(self.masked_names))
        walk = TreeWalk([r for r in self.roots if os.path.isdir(r)], self.max_entries, lambda e: not masked(e.name))
        for entry, kind in walk:
            if kind == stat.S_IFREG and not masked(entry.name):
                try:  # the listing said a regular file: its stamp is its lstat
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    walk.passed_over(exc)
                    continue
                if stat.S_ISREG(st.st_mode):
                    files[entry.path] = _stamp(st)
        return Snapshot(files, complete=walk.complete, skipped=walk.skipped)

    def changes(self, before: Snapshot) -> list[dict[str, Any]]:
        """Files created, changed or deleted since ``before`` (a scan now; see :meth:`diff`)."""
        return self.diff(before, self.snapshot())

    def diff(self, before: Snapshot, after: Snapshot, *, when: str | None = None) -> list[dict[str, Any]]:
        """Files created, changed or deleted from ``before`` to ``after``: path, change, size, sha256, owner uid.

        ``sha256`` is None (with ``unhashed`` saying why) for a file beyond
        the hashing budget or unreadable; an incomplete scan adds an entry
        ``{"incomplete": ...}`` (one for the entry budget, one with ``skipped``, the count of folders and
        files it could not read), and then no deletion is listed. ``when`` (e.g. "between calls") is
        added to every entry.
        """
        skipped = after.skipped or before.skipped
        complete = before.complete and after.complete and not skipped
        if complete and before.files == after.files:  # the usual case between calls: one dict comparison
            return []
        out: list[dict[str, Any]] = []
        budget = self.max_hash_bytes
        for path in sorted(after.files):
            stamp = after.files[path]
            old = before.files.get(path)
            if old == stamp:
                continue
            entry: dict[str, Any] = {
                "path": path,
                "change": "created" if old is None else "modified",
                "size": stamp[0],
                "sha256": None,
            }
            if stamp[0] > budget:
                entry["unhashed"] = "over the per-call hashing budget"
            else:
                digest, uid, why = _sha256_file(path, stamp)
                budget -= stamp[0]  # what was read at most, whatever the file holds now
                if digest is None:
                    entry["unhashed"] = why
                else:
                    entry["sha256"], entry["uid"] = digest, uid
            out.append(entry)
        if complete:
            out += [{"path": p, "change": "deleted"} for p in sorted(set(before.files) - set(after.files))]
        if not (before.complete and after.complete):
            out.append({"incomplete": f"more than {self.max_entries} entries: only the first were compared"})
        if skipped:
            out.append(
                {
                    "incomplete": f"{skipped} folders or files could not be read (a path longer than PATH_MAX, "
                    "or no permission): what they hold was not compared",
                    "skipped": skipped,
                }
            )
        if when is not None:
            for entry in out:
                entry["when"] = when
        return out


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _sha256_file(path: str, stamp: Stamp) -> tuple[str | None, int | None, str]:
    """SHA-256 of the regular file the scan stamped ``stamp``, opened without following symlinks.

    Reads at most the stamped size: a sandbox thread that outlives its call may
    grow or rewrite the file meanwhile, and then the file is recorded as changed
    while hashing (no hash) instead of with a hash of other bytes than its size.
    Returns ``(digest, owner uid, "")`` or ``(None, None, why)``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None, None, "unreadable or replaced while hashing"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or _stamp(st) != stamp:
            return None, None, "changed while hashing"
        h = hashlib.sha256()
        left = stamp[0]
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            h.update(chunk)
            left -= len(chunk)
        if left or _stamp(os.fstat(fd)) != stamp:
            return None, None, "changed while hashing"
        return h.hexdigest(), st.st_uid, ""
    except OSError:
        return None, None, "unreadable or replaced while hashing"
    finally:
        os.close(fd)


def tracker_for(config: Any) -> WriteTracker | None:
    """The tracker for an :class:`~glsandbox_kernel.config.OSSandboxConfig`, or None when it writes no host folder
    (or keeps no audit record: the lists go nowhere else)."""
    from .project import writable_roots

    roots = writable_roots(config) if config.enable_audit else ()
    return WriteTracker(roots, tuple(config.filesystem.masked_names)) if roots else None
