"""How the disk guard reaches what it counts: folders by directory fd, nameless files by ``/proc`` (HOST side).

Who calls: :class:`~glsandbox_kernel.disk_guard.DiskGuard` only, in the host process, over the host's own
view of the folders a sandbox may write; nothing here trusts what the sandbox says.

Depth does not matter to a walk by directory fd: each folder is opened by its name in its parent's fd
(``O_DIRECTORY | O_NOFOLLOW``: a symlink is counted as itself, never followed), listed with
``os.scandir(fd)`` and its entries ``fstatat``-ed there, so a file below a path longer than ``PATH_MAX`` is
counted as any other. Bounded: a walk holds one fd per level below the folder it started from, at most
:data:`MAX_DEPTH` levels below a root, and lists at most a budget of entries; past either it raises
:class:`Uncountable` (the guard then kills the sandbox: fail closed), so a hostile tree (10 000 nested
folders, millions of entries) costs the host neither a spinning thread nor its fds. A path the guard
keeps from an inotify event is looked up the same way when the kernel refuses it (``ENAMETOOLONG``).

Files held open with no name (unlinked, or ``O_TMPFILE``, which never had one) are in no folder: they are
found in the fd tables of the sandbox's own processes (:func:`held_files`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable

#: Levels of folders below a root the guard counts; deeper, the sandbox is killed (fail closed). A walk holds
#: one fd per level, so this bounds the fds the host spends on one sandbox's tree.
MAX_DEPTH = 128
#: Open fds of the sandbox's processes the guard reads at most for nameless files; past it, killed (fail closed).
MAX_HELD_FDS = 65_536

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class Uncountable(Exception):
    """The folders (or the sandbox's open files) are past what the guard can count; the reason is the message."""


def depth_below(path: str, roots: Iterable[str]) -> int:
    """How many levels ``path`` lies below the root that holds it (0 for a root; 0 when none holds it)."""
    for root in roots:
        if path == root:
            return 0
        if path.startswith(root.rstrip("/") + "/"):
            return path[len(root.rstrip("/")) + 1 :].count("/") + 1
    return 0


def _split(path: str, roots: Iterable[str]) -> tuple[str, list[str]]:
    for root in roots:
        base = root.rstrip("/")
        if path == root:
            return root, []
        if path.startswith(base + "/"):
            rest = [p for p in path[len(base) + 1 :].split("/") if p]
            if len(rest) > MAX_DEPTH + 1:
                raise Uncountable(f"folders nested more than {MAX_DEPTH} deep")
            return root, rest
    raise OSError(errno.ENAMETOOLONG, "not below a root the guard counts", path)


def open_dir(path: str, roots: Iterable[str]) -> int:
    """A directory fd of ``path`` (``O_NOFOLLOW``); past ``PATH_MAX``, opened name by name from its root."""
    try:
        return os.open(path, _DIR)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
    root, rest = _split(path, roots)
    fd = os.open(root, _DIR)
    try:
        for name in rest:
            sub = os.open(name, _DIR, dir_fd=fd)
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


def lstat(path: str, roots: Iterable[str]) -> os.stat_result:
    """``os.lstat(path)``; past ``PATH_MAX``, the entry's ``fstatat`` in its folder reached by :func:`open_dir`."""
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
    parent, name = path.rsplit("/", 1)
    fd = open_dir(parent, roots)
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def walk(
    top: str,
    fd: int,
    depth: int,
    budget: int,
    visit: Callable[[str, os.stat_result], bool],
    folder: Callable[[str, int, os.stat_result], None],
) -> None:
    """Every entry below the folder ``top`` (open as ``fd``, which this closes), depth first, by dir fd.

    ``visit(path, st)`` counts an entry (a folder with the ``fstat`` of its own fd: what was opened is what
    is counted); for a folder it says whether to go below it. ``folder(path, fd, st)`` is called with each
    folder's open fd before it is listed (the guard adds its watch through ``/proc/self/fd``). ``depth`` is
    ``top``'s level below its root. Raises :class:`Uncountable` past :data:`MAX_DEPTH` or ``budget`` entries.
    """
    stack: list[tuple[str, int, list[str], int]] = []  # folders with subfolders still to walk: one fd each
    listed = 0
    try:
        path = top
        if depth > MAX_DEPTH:
            raise Uncountable(f"folders nested more than {MAX_DEPTH} deep")
        while True:
            names: list[str] = []
            st = os.fstat(fd)
            if visit(path, st):
                folder(path, fd, st)
                try:
                    with os.scandir(fd) as it:
                        for entry in it:
                            listed += 1
                            if listed > budget:
                                raise Uncountable(f"more than {budget} entries")
                            try:
                                if entry.is_dir(follow_symlinks=False):
                                    names.append(entry.name)
                                else:
                                    visit(f"{path}/{entry.name}", entry.stat(follow_symlinks=False))
                            except OSError:
                                continue  # gone since the listing: its event says so
                except OSError:
                    pass  # unreadable or gone: what it held is dropped by its events, counted by the next walk
            if names:
                stack.append((path, fd, names, depth))
            else:
                os.close(fd)
            fd = -1
            while fd < 0:
                while stack and not stack[-1][2]:
                    os.close(stack.pop()[1])
                if not stack:
                    return
                parent, parent_fd, todo, parent_depth = stack[-1]
                if parent_depth + 1 > MAX_DEPTH:
                    raise Uncountable(f"folders nested more than {MAX_DEPTH} deep")
                name = todo.pop()
                try:
                    fd = os.open(name, _DIR, dir_fd=parent_fd)
                except OSError:
                    continue  # gone, or swapped for a symlink or a file: its events count what is there
                path, depth = f"{parent}/{name}", parent_depth + 1
    finally:
        if fd >= 0:
            os.close(fd)
        for _, held, _, _ in stack:
            os.close(held)


def listing(path: str, roots: Iterable[str], budget: int) -> tuple[os.stat_result, list[tuple[str, os.stat_result]]]:
    """The folder ``path``'s own ``fstat`` and its entries' (name, ``lstat``), not below them: what the guard
    re-reads of a folder it holds no watch on. OSError when it is gone or no folder; :class:`Uncountable`
    past ``budget`` entries."""
    fd = open_dir(path, roots)
    try:
        st, found = os.fstat(fd), list[tuple[str, os.stat_result]]()
        with os.scandir(fd) as it:
            for entry in it:
                if len(found) >= budget:
                    raise Uncountable(f"more than {budget} entries")
                try:
                    found.append((entry.name, entry.stat(follow_symlinks=False)))
                except OSError:
                    continue  # gone since the listing
        return st, found
    finally:
        os.close(fd)


def held_files(pids: Iterable[int], devs: set[int], cap: int = MAX_HELD_FDS) -> dict[tuple[int, int], int]:
    """Blocks in bytes of the regular files on ``devs`` with no name (unlinked, ``O_TMPFILE``) that the
    processes ``pids`` (the sandbox's, never the host's) hold open, by inode (st_dev, st_ino).

    Read from ``/proc/<pid>/fd``: a link whose target ends in `` (deleted)`` (``/path (deleted)``, an
    ``O_TMPFILE``'s ``/folder/#NNN (deleted)``), ``os.stat`` of the link for the inode. A process gone
    meanwhile is passed over, and so is one whose fds the host may not read (a container's processes of
    another uid on a host that is not root; a process made non-dumpable: honest programs do both, so a kill
    there would stop honest sandboxes; a known limit, in the README); more than ``cap`` fds raise
    :class:`Uncountable`.
    """
    found: dict[tuple[int, int], int] = {}
    seen = 0
    for pid in pids:
        base = f"/proc/{pid}/fd"
        try:
            with os.scandir(base) as it:
                entries = list(it)
        except OSError:
            continue  # gone, or not the host's to read
        for entry in entries:
            seen += 1
            if seen > cap:
                raise Uncountable(f"more than {cap} open files")
            link = f"{base}/{entry.name}"
            try:
                if not os.readlink(link).endswith(" (deleted)"):
                    continue
                st = os.stat(link)
            except OSError:
                continue  # closed meanwhile
            if stat.S_ISREG(st.st_mode) and st.st_dev in devs:
                found[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return found


__all__ = [
    "MAX_DEPTH",
    "MAX_HELD_FDS",
    "Uncountable",
    "depth_below",
    "held_files",
    "listing",
    "lstat",
    "open_dir",
    "walk",
]
