"""HOST side: walking a host folder tree cheaply, and matching masked names (used by :mod:`.project`'s
scan for secrets and doors at every sandbox start, and by :mod:`.written_files` around every call).

Cheap because a big project folder (a checkout whose ``.cache`` holds root trees: tens of thousands of
entries) is walked at every kernel start: the type of an entry comes from the directory listing
(``d_type``) wherever the filesystem gives it, and only the other entries are ``lstat``-ed: those whose
type is unknown (``DT_UNKNOWN``: the lstat says) and sockets, FIFOs and device nodes (the lstat confirms).
Masked names are matched by one set lookup (names without wildcards) and one compiled regex (the others).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator

#: The file types that are a door to a host process or device: socket, FIFO, character and block device.
DOOR_TYPES = frozenset((stat.S_IFSOCK, stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK))


def is_door(mode: int) -> bool:
    """Whether ``mode`` (an ``st_mode``, or a type from :class:`TreeWalk`) is a socket, FIFO or device node."""
    return stat.S_IFMT(mode) in DOOR_TYPES


@functools.lru_cache(maxsize=64)
def mask_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """``name -> bool``: whether ``name`` matches one of ``patterns`` (``fnmatchcase`` of each).

    Patterns without a wildcard (``.git``, ``.ssh``, ``jupyter_runtime``) are a set; the others one
    compiled alternation: one lookup and at most one regex match per name instead of one
    ``fnmatchcase`` per pattern (17 by default).
    """
    literal = frozenset(p for p in patterns if not any(c in p for c in "*?["))
    wild = [p for p in patterns if p not in literal]
    if not wild:
        return literal.__contains__
    match = re.compile("|".join(fnmatch.translate(p) for p in wild)).match
    return lambda name: name in literal or match(name) is not None


def is_masked(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether the file or folder name ``name`` matches one of ``patterns`` (:func:`fnmatch.fnmatchcase`)."""
    return mask_matcher(tuple(patterns))(name)


class TreeWalk:
    """HOST side: every entry below ``roots`` with its file type, depth first, at most ``budget`` of them.

    Iterating yields ``(entry, kind)``: ``kind`` is ``stat.S_IFMT`` of the entry's ``lstat`` (``S_IFDIR``,
    ``S_IFREG``, ``S_IFLNK``, or a door's type), taken from the directory listing where the filesystem
    gives it; anything else is ``lstat``-ed (``entry.stat(follow_symlinks=False)``, cached on the entry:
    a caller needing a regular file's stamp calls it, one syscall). Symlinks are yielded, never
    followed; unreadable folders and entries are passed over and counted in ``skipped`` (a path past
    PATH_MAX, no permission; not one that vanished meanwhile). It descends into a folder when
    ``descend(entry)`` says so. After the loop, ``complete`` is False when the walk stopped at the
    budget. Used by :func:`~.project.find_masked` and by :class:`~.written_files.WriteTracker`.
    """

    def __init__(self, roots: Iterable[str], budget: int, descend: Callable[[os.DirEntry[str]], bool]) -> None:
        self.roots = list(roots)
        self.budget = budget
        self.descend = descend
        self.complete = True
        self.skipped = 0

    def __iter__(self) -> Iterator[tuple[os.DirEntry[str], int]]:
        todo = list(self.roots)
        seen = 0
        dir_, reg, lnk = stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK
        while todo:
            try:
                with os.scandir(todo.pop()) as it:
                    entries = list(it)
            except OSError as exc:
                self.passed_over(exc)
                continue
            for entry in entries:
                seen += 1
                if seen > self.budget:
                    self.complete = False
                    return
                # With d_type known these ask no syscall; with DT_UNKNOWN the first lstat()s (cached).
                try:
                    if entry.is_dir(follow_symlinks=False):
                        kind = dir_
                    elif entry.is_file(follow_symlinks=False):
                        kind = reg
                    elif entry.is_symlink():
                        kind = lnk
                    else:  # a socket, FIFO, device (or a vanished entry): its own lstat
                        kind = stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)
                except OSError as exc:
                    self.passed_over(exc)
                    continue
                yield entry, kind
                if kind == dir_ and self.descend(entry):
                    todo.append(entry.path)

    def passed_over(self, exc: OSError) -> None:
        """A folder or entry that could not be read: counted in ``skipped``, unless it is gone (nothing
        below it to see). Also called by a caller whose own ``lstat`` of an entry failed."""
        if not isinstance(exc, FileNotFoundError):
            self.skipped += 1
