"""Private host folders in the shared temporary folder, named by their creator (HOST side).

Backends, the network proxy and ``glsandbox run`` keep sockets, a BASIC
worker's files and the audit key file in folders under ``$TMPDIR``. Each is
made by :func:`private_dir` as ``glsandbox-<kind><creator token>-…`` (mode
0700; the token is pid, start time and pid namespace,
:mod:`glsandbox_kernel.creator`): a host killed with SIGKILL cannot remove
its own, so the first :func:`private_dir` of every later host process sweeps
the folders whose creator is gone (:func:`glsandbox_kernel.creator.gone`:
folders of another pid namespace sharing ``$TMPDIR`` are left to its hosts).
The sweep removes only real folders owned by this uid (never through a
planted symlink); ``shutil.rmtree`` does not follow links
inside them either, and a folder in them the sandbox made unreadable
(``chmod 0``) gets its owner's access back first (by descriptors, only
folders of this uid, links never followed) so the removal is complete. :func:`remove` also unmounts a sized scratch folder
(kind ``q``, see ``backends/scratch.py``).

Folders of versions before the creator token are named
``glsandbox-<kind><pid>-…``: a pid with no start time and no namespace. The
same rule judges them as far as the name allows, the namespace made moot
instead of compared (:class:`_OldCreators`): such a folder is swept when this
host sees every process of the machine (it is in the initial pid namespace,
``/proc`` is its own and hides nothing) and none has the folder's pid as its
own pid, in whatever namespace. Anywhere else they are left, as before.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import threading

from . import creator, procfs
from .linux import libc

KINDS = ("q", "w", "net", "ctr", "run", "nb")
_NAME = re.compile(r"^glsandbox-(" + "|".join(KINDS) + ")" + creator.PATTERN + "-")
_OLD_NAME = re.compile(r"^glsandbox-(" + "|".join(KINDS) + r")(\d+)-")
#: PROC_PID_INIT_INO: the inode of the initial pid namespace, whose /proc lists every process
_INIT_PID_NS = 0xEFFFFFFC
_MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8
_swept = False
_sweep_lock = threading.Lock()


def private_dir(kind: str, tag: str = "") -> str:
    """HOST side: a new 0700 folder of ``kind`` for this process, after sweeping dead creators' once."""
    if kind not in KINDS:
        raise ValueError(f"unknown private folder kind {kind!r}")
    sweep_once()
    return tempfile.mkdtemp(prefix=f"glsandbox-{kind}{creator.token()}-{tag}")


def remove(path: str) -> None:
    """HOST side: unmount (kind ``q``) and remove a folder made by :func:`private_dir`.

    Only a real folder owned by this uid is touched, and a mount is detached
    with ``UMOUNT_NOFOLLOW``: a name planted in the shared temporary folder
    cannot make root unmount or remove something else.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return
    m = _NAME.match(os.path.basename(path)) or _OLD_NAME.match(os.path.basename(path))
    if m is not None and m.group(1) == "q":
        libc().umount2(path.encode(), _MNT_DETACH | _UMOUNT_NOFOLLOW)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):  # a folder in it the sandbox made unreadable or unwritable: ours to fix
        with contextlib.suppress(OSError):
            _restore_owner_access(path)
        shutil.rmtree(path, ignore_errors=True)


def _restore_owner_access(path: str) -> None:
    """Give back ``u+rwx`` to ``path`` and every folder under it that this uid owns, by descriptors.

    A sandbox writing in a private folder may ``chmod 0`` a folder of it (its own file), which
    ``rmtree`` can neither list nor empty. Each folder is opened ``O_PATH | O_NOFOLLOW`` by
    name in its parent's descriptor and judged by ``fstat`` of that descriptor (a folder, ours)
    before its mode is set through it, so a name swapped for a symlink changes nothing
    elsewhere; :func:`os.fwalk` descends by descriptors without following links, top-down, so a
    folder is fixed before it is entered."""
    parent = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _owner_access(os.path.basename(path), parent)
    finally:
        os.close(parent)
    for _, dirs, _, dir_fd in os.fwalk(path, follow_symlinks=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                _owner_access(name, dir_fd)


def _owner_access(name: str, dir_fd: int) -> None:
    """``u+rwx`` on the folder ``name`` of ``dir_fd`` when it is a real folder this uid owns."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o700 != 0o700:
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode) | 0o700)  # this very inode
    finally:
        os.close(fd)


def sweep() -> int:
    """HOST side: remove the private folders of host processes that are gone; how many."""
    base = tempfile.gettempdir()
    removed = 0
    with contextlib.suppress(OSError):
        old = _OldCreators()
        for name in os.listdir(base):
            path = os.path.join(base, name)
            m, o = _NAME.match(name), _OLD_NAME.match(name)
            if not (creator.gone(*m.groups()[1:]) if m else o is not None and old.gone(int(o.group(2)))):
                continue
            remove(path)
            removed += not os.path.lexists(path)
    return removed


def sweep_once() -> None:
    """HOST side: :func:`sweep` on the first call in this process only."""
    global _swept
    with _sweep_lock:
        if _swept:
            return
        _swept = True
    sweep()


class _OldCreators:
    """Whether the creator of an old, pid-only folder name is gone (HOST side; see the module doc).

    The pid in such a name is its creator's own (innermost) pid, of a namespace
    unknown. From the initial pid namespace every process is in ``/proc`` with
    its ``NSpid`` chain, so "no process has that pid as its own, in any
    namespace" is the token rule's "no process has the pid" for every
    namespace at once. The rule's other half (the pid's process started at
    another time) needs a start time the name lacks; a folder's ctime is on
    the wall clock, which steps, so it is not compared: a reused pid keeps the
    folder until that process ends too.
    """

    def __init__(self) -> None:
        self._pids: set[int] | None = None

    def gone(self, pid: int) -> bool:
        if self._pids is None:
            self._pids = _all_own_pids()
        return bool(self._pids) and pid > 0 and pid not in self._pids


def _all_own_pids() -> set[int]:
    """Every process's own (innermost) pid, or an empty set when this host cannot see them all."""
    try:
        if os.stat("/proc/self/ns/pid").st_ino != _INIT_PID_NS or os.readlink("/proc/self") != str(os.getpid()):
            return set()
        proc = next((m for m in procfs.mountinfo() if m.mount_point == "/proc"), None)
        if proc is None or any(
            o.startswith("hidepid=") and o not in ("hidepid=0", "hidepid=off") for o in proc.super_options.split(",")
        ):
            return set()
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except (OSError, ValueError):
        return set()
    out: set[int] = set()
    for entry in entries:
        chain = procfs.ns_pids(int(entry))  # a zombie has its chain too: kept, as the token rule keeps one
        if not chain:
            if os.path.exists(f"/proc/{entry}"):
                return set()  # there but unreadable: unknowable
            continue
        out.add(chain[-1])
    return out


__all__ = ["KINDS", "private_dir", "remove", "sweep", "sweep_once"]
