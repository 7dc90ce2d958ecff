"""The id maps of a sandbox's user namespace, written from outside it (either side, see each function).

A process inside a fresh user namespace may map only its own uid; the
sandbox's maps (as root: the sandbox uid onto an unprivileged host uid) need
CAP_SETUID in the parent namespace, so they are written by the zygote
template (:func:`write_maps_from_template`) for the child it forked, or by
P0 in the chain :mod:`.namespaces` builds elsewhere (:func:`write_proc`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import struct

#: Set in a zygote child whose id maps the TEMPLATE writes (:func:`maps_by_template`):
#: ``(up_w, down_r)``. Then no P0 is forked: this process unshares itself and is P1.
template_pipes: tuple[int, int] | None = None
#: True in a zygote child the TEMPLATE cloned straight into its namespaces (:func:`clone_flags`)
#: and in the worker its init forked: no unshare, no P1 (see ``namespaces.init_cloned_child``).
cloned_by_template = False
#: In the child: the detached idmapped trees made before the user namespace, by bind source
#: (:func:`.mounts_child.make_trees_child`); each is moved into the worker's root and closed.
trees: dict[str, int] = {}


def wants_template_maps(wire: object) -> bool:
    """TEMPLATE side: does this plan's namespaces section (plain data) need id maps written?"""
    ns = wire.get("namespaces") if isinstance(wire, dict) else None
    return (
        isinstance(ns, dict)
        and bool(ns.get("enabled"))
        and "user" in (ns.get("kinds") or ())
        and bool(ns.get("uid_map"))
    )


def clone_flags(wire: object) -> int:
    """TEMPLATE side: the clone(2) namespace flags to create this plan's child with, or 0.

    Non-zero only for a plan whose id maps the template writes
    (:func:`wants_template_maps`) and that has a pid namespace: the child
    then starts as pid 1 of it (the init) and forks the worker itself, so
    no P1 stays behind (one process per sandbox fewer: 20 idle sandboxes
    175 -> 134 MiB of PSS, see ``benchmarks/bench_idle.py``).
    """
    from ..linux import CLONE_NEWPID, CLONE_NS_FLAGS

    if not wants_template_maps(wire):
        return 0
    assert isinstance(wire, dict)
    mounts = wire.get("mounts")
    if isinstance(mounts, dict) and any(isinstance(b, dict) and b.get("idmap") for b in mounts.get("binds") or ()):
        return 0  # an idmapped bind is made before the user namespace, by host root (make_trees_child)
    kinds = wire["namespaces"].get("kinds") or ()
    if "pid" not in kinds:
        return 0
    flags = 0
    for kind in kinds:
        flag = CLONE_NS_FLAGS.get(kind)
        if flag is None:
            return 0  # refused in the child, by the plan's schema check
        flags |= flag
    return flags | CLONE_NEWPID


def maps_by_template(up_w: int, down_r: int) -> None:
    """FORKED CHILD of the zygote, before the plan: the template writes our id maps.

    :func:`unshare_child` then unshares in this very process (it becomes P1,
    the template's direct child) and waits on ``down_r`` for the template's
    answer instead of forking a P0 to write them: one process fewer per sandbox.
    """
    global template_pipes
    template_pipes = (up_w, down_r)


def write_maps_from_template(pid: int, wire: dict[str, object], up_r: int, down_w: int) -> None:
    """TEMPLATE side (trusted, unconfined): the child ``pid`` said it unshared; write its id maps.

    Reads the child's 5-byte note on ``up_r`` (b"U" unshared, b"E" + errno
    failed, EOF: it died), writes setgroups, uid_map and gid_map from the
    plan's namespaces section, and answers b"M", or b"E" + errno + a code
    naming the file that failed. Closes both fds.
    """
    try:
        msg = os.read(up_r, 5)
        if msg[:1] != b"U":
            return
        ns = wire["namespaces"]
        assert isinstance(ns, dict)
        answer = b"M"
        for code, (name, text) in enumerate(
            (
                ("setgroups", ns.get("setgroups") or "deny"),
                ("uid_map", ns["uid_map"]),
                ("gid_map", ns.get("gid_map") or ""),
            )
        ):
            try:
                write_proc(pid, name, str(text))
            except OSError as exc:
                answer = b"E" + struct.pack("ii", exc.errno or 0, code)
                break
        with contextlib.suppress(OSError):
            os.write(down_w, answer)
    except OSError:
        pass
    finally:
        os.close(up_r)
        os.close(down_w)


MAP_FILES = ("setgroups", "uid_map", "gid_map")


def write_proc(pid: int, name: str, text: str) -> None:
    """CHILD side (P0): one ``write`` of ``text`` to /proc/<pid>/<name>."""
    path = f"/proc/{pid}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        exc.filename = name
        raise
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        exc.filename = name
        raise
    finally:
        os.close(fd)


# --- Idmapped binds: a root-owned read-only project folder shown owned by the sandbox user ---

OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x100000
MOVE_MOUNT_F_EMPTY_PATH = 0x4


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _sys(name: str, *args: object) -> int:
    from ..linux import libc, sysno

    nr = sysno(name)
    if nr is None:
        raise OSError(errno.ENOSYS, f"{name}: unknown syscall number")
    res = int(libc().syscall(nr, *args))
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return res


def idmap_userns(uid: int, gid: int) -> int:
    """HOST ROOT side: an fd of a fresh user namespace mapping 0 -> ``uid``/``gid`` (for an idmap).

    A short-lived child unshares CLONE_NEWUSER, this process writes its maps
    and opens ``/proc/<pid>/ns/user``; the child then ends (the fd keeps the
    namespace). Raises OSError.
    """
    from ..linux import CLONE_NEWUSER, libc

    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the helper child
        try:
            os.close(up_r)
            os.close(down_w)
            ok = libc().unshare(CLONE_NEWUSER) == 0
            os.write(up_w, b"U" if ok else b"E")
            os.read(down_r, 1)
        finally:
            os._exit(0)
    os.close(up_w)
    os.close(down_r)
    try:
        if os.read(up_r, 1) != b"U":
            raise OSError(errno.EPERM, "unshare(CLONE_NEWUSER) failed in the idmap helper")
        write_proc(pid, "uid_map", f"0 {uid} 1\n")
        write_proc(pid, "setgroups", "deny")
        write_proc(pid, "gid_map", f"0 {gid} 1\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(up_r)
        os.close(down_w)
        os.waitpid(pid, 0)


def idmapped_tree(src: str, uid: int, gid: int) -> int:
    """HOST ROOT side (host user namespace): a detached, read-only, nosuid, nodev clone of ``src``
    whose on-disk uid/gid 0 appear as ``uid``/``gid``; its fd (move it in with :func:`attach_tree`).

    Never writable: a writable idmapped mount of root-owned files would let the sandbox
    create root-owned (setuid) files. Raises OSError (no kernel or filesystem support).
    """
    userns = idmap_userns(uid, gid)
    try:
        fd = _sys("open_tree", -100, src.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
        try:
            attr = _MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, userns)
            _sys("mount_setattr", fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr))
        except OSError:
            os.close(fd)
            raise
        return fd
    finally:
        os.close(userns)


def attach_tree(fd: int, dst: str) -> None:
    """CHILD side (the worker, building its root): mount the detached tree ``fd`` on ``dst``; closes it."""
    try:
        _sys("move_mount", fd, b"", -100, dst.encode(), MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(fd)


@functools.cache
def idmap_supported(path: str) -> tuple[bool, str]:
    """HOST side, as root: can an idmapped bind of ``path`` be made here (kernel, filesystem)?

    Tried for real once per path: a detached tree is made and dropped at once.
    """
    try:
        os.close(idmapped_tree(path, 65534, 65534))
    except OSError as exc:
        return False, str(exc)
    return True, "open_tree + mount_setattr(MOUNT_ATTR_IDMAP) work"
