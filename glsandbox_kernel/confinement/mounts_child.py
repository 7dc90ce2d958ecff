"""Step: the worker's root filesystem, CHILD side (see :mod:`.mounts` for the plan).

Runs in the forked child only: :func:`open_sources_child` in P1 (new mount
namespace, still the host uid), :func:`setup_root_child` in the worker P3.
Modelled on bubblewrap's ``setup_newroot``; every failure is a
:class:`ConfinementError` naming the call.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from collections.abc import Callable

from ..linux import libc, sysno
from . import idmaps
from ._common import ChildState, ConfinementError
from .mounts import MountsSection

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_SILENT = 32768
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

_ST_RDONLY = 1
_ST_NOSUID = 2
_ST_NODEV = 4
_ST_NOEXEC = 8
_ST_NOATIME = 1024
_ST_NODIRATIME = 2048
_ST_RELATIME = 4096


def _mount_child(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """CHILD side: ``mount(2)``; raises ConfinementError naming the call."""
    res = libc().mount(
        src.encode() if src is not None else None,
        dst.encode(),
        fstype.encode() if fstype is not None else None,
        flags,
        data.encode() if data is not None else None,
    )
    if res != 0:
        err = ctypes.get_errno()
        raise ConfinementError("mounts", f"mount({src!r}, {dst!r}, {fstype!r}, {flags:#x})", err)


def _umount_child(target: str) -> None:
    """CHILD side: lazy unmount (``umount2(MNT_DETACH)``)."""
    if libc().umount2(target.encode(), MNT_DETACH) != 0:
        raise ConfinementError("mounts", f"umount2({target!r}, MNT_DETACH)", ctypes.get_errno())


def _pivot_root_child(new_root: str, put_old: str) -> None:
    """CHILD side: ``pivot_root(2)`` through ``syscall``."""
    nr = sysno("pivot_root")
    if nr is None:
        raise ConfinementError("mounts", "pivot_root", None, f"unknown syscall number on {sys.platform}")
    if libc().syscall(nr, new_root.encode(), put_old.encode()) != 0:
        raise ConfinementError("mounts", f"pivot_root({new_root!r}, {put_old!r})", ctypes.get_errno())


def _locked_flags_child(path: str) -> int:
    """CHILD side: the mount flags of ``path`` that a user namespace may not clear."""
    f = os.statvfs(path).f_flag
    flags = 0
    for st_flag, ms_flag in (
        (_ST_RDONLY, MS_RDONLY),
        (_ST_NOSUID, MS_NOSUID),
        (_ST_NODEV, MS_NODEV),
        (_ST_NOEXEC, MS_NOEXEC),
        (_ST_NOATIME, MS_NOATIME),
        (_ST_NODIRATIME, MS_NODIRATIME),
        (_ST_RELATIME, MS_RELATIME),
    ):
        if f & st_flag:
            flags |= ms_flag
    if not flags & (MS_NOATIME | MS_RELATIME):
        flags |= MS_STRICTATIME
    return flags


def _bind_child(src: str, dst: str, *, rw: bool, nodev: bool = True) -> None:
    """CHILD side: bind ``src`` on ``dst`` and remount it nosuid(,nodev)(,ro)."""
    _mount_child(src, dst, None, MS_BIND | MS_SILENT)
    flags = _locked_flags_child(dst) | MS_BIND | MS_REMOUNT | MS_NOSUID
    if nodev:
        flags |= MS_NODEV
    if not rw:
        flags |= MS_RDONLY
    _mount_child(None, dst, None, flags)


def _make_point_child(path: str, kind: str, create: bool) -> bool:
    """CHILD side: create a mount point (dir or empty file); False when absent and not creatable."""
    if os.path.lexists(path):
        return True
    if not create:
        return False
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if kind == "dir":
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return True


def open_sources_child(section: MountsSection | None, state: ChildState) -> None:
    """CHILD side (P1, new mount namespace, still the host uid): ``O_PATH`` fds of every source.

    Opened here because bind sources must belong to the caller's mount
    namespace, and because after the uid switch the sandbox uid cannot walk
    into root-only directories. Never raises: a source that cannot be opened
    is skipped and reported. The fds go to ``state.sources``.
    """
    if not section or not section.enabled:
        return
    paths: list[str] = [b.src for b in (*section.binds, *section.etc_binds)]
    paths += [f"/dev/{name}" for name in section.dev]
    if "/dev/null" not in paths:
        paths.append("/dev/null")
    if section.root:
        paths.append(section.root)
    if section.proxy_socket:
        paths.append(section.proxy_socket.src)
    fds: dict[str, int] = {}
    failed: list[str] = []
    for path in paths:
        if path in fds:
            continue
        try:
            fds[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror}")
    if failed:
        state.report.setdefault("mounts_unopened", failed)
    state.sources = fds


def setup_root_child(section: MountsSection | None, state: ChildState) -> None:
    """CHILD side: build the new root and pivot into it (see the module docstring).

    Runs in the worker inside the new mount and pid namespaces, holding
    CAP_SYS_ADMIN there; ``state.sources`` are the fds from
    :func:`open_sources_child` (closed here). Leaves the working directory
    as the cwd.
    """
    if not section or not section.enabled:
        return
    sources = state.sources
    create = section.mode == "tmpfs_root"
    missing: list[str] = []

    def src(path: str, proc: str = "/oldroot/proc") -> str | None:
        fd = sources.get(path)
        return None if fd is None else f"{proc}/self/fd/{fd}"

    _mount_child(None, "/", None, MS_REC | MS_PRIVATE)
    if not create:
        root_src = src(section.root or "", "/proc")
        if root_src is None:
            raise ConfinementError("mounts", f"open({section.root!r})", None, "the given root must exist")
    _mount_child("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    os.chdir("/tmp")
    for d in ("newroot", "oldroot", "scratch"):
        os.mkdir(d, 0o755)
    if create:
        _mount_child("tmpfs", "newroot", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,size={section.root_size}")
    else:
        _mount_child(root_src, "newroot", None, MS_BIND | MS_REC)
    scratch_opts = "mode=0755"
    if section.scratch_size:
        scratch_opts += f",size={section.scratch_size}"
    _mount_child("tmpfs", "scratch", "tmpfs", MS_NOSUID | MS_NODEV, scratch_opts)
    _pivot_root_child(".", "oldroot")
    os.chdir("/")
    new = "/newroot"

    for link in section.symlinks:
        dst = new + link.dst
        if not os.path.lexists(dst) and create:
            os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
            os.symlink(link.target, dst)
    # The private /tmp first: binds that live under /tmp (a project or venv
    # checked out there) then land on top of it instead of being hidden by it.
    _setup_scratch_child(section, new, create, missing)
    for bind in (*section.binds, *section.etc_binds):
        source = src(bind.src)
        if source is None:
            continue
        dst = new + bind.dst
        # Under /tmp the mount point is on the sandbox's own scratch tmpfs, never in a given root:
        # it may be made there (a checkout or venv under /tmp is visible in a CHROOT too).
        in_scratch = bind.dst.startswith("/tmp/") and "/tmp" not in missing
        try:
            point = _make_point_child(dst, bind.kind, create or in_scratch)
        except PermissionError:  # below a bound folder the sandbox uid may not enter (mode 0700)
            point = False
        if not point:
            missing.append(bind.dst)
            continue
        tree = idmaps.trees.pop(bind.src, None) if bind.idmap else None
        if tree is not None:
            try:
                idmaps.attach_tree(tree, dst)  # read-only, nosuid, nodev already
            except OSError as exc:
                raise ConfinementError("mounts", f"move_mount(idmapped {bind.src!r}, {bind.dst!r})", exc.errno) from exc
            continue
        _bind_child(source, dst, rw=bind.rw)
    cwd = section.cwd
    if create and cwd and not any(_under(cwd, b.dst) for b in section.binds if b.kind == "dir"):
        # A hidden project: an empty, read-only working directory (a relative write fails
        # loudly). Where binds live below it (a venv in the project), the read-only root holds it.
        _make_point_child(new + cwd, "dir", True)
        if not any(_under(b.dst, cwd) for b in section.binds):
            flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
            _mount_child("tmpfs", new + cwd, "tmpfs", flags, "size=4k,mode=0555")
    if create:
        for name, text in section.etc_files.items():
            path = f"{new}/etc/{name}"
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, text.encode())
            os.close(fd)
    _setup_dev_child(section, new, src, create, missing)
    proxy = section.proxy_socket
    if proxy and src(proxy.src) is not None:
        dst = new + proxy.dst
        if not create and os.path.isdir(new + "/run"):
            _mount_child("tmpfs", new + "/run", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k")
        if _make_point_child(dst, "file", create or os.path.isdir(new + "/run")):
            _bind_child(str(src(proxy.src)), dst, rw=False)
        else:
            missing.append(proxy.dst)
    if _make_point_child(new + "/proc", "dir", create):
        opts = f"hidepid={section.proc_hidepid}" if section.proc_hidepid else None
        try:
            _mount_child("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts)
        except ConfinementError:
            _mount_child("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            opts = None
        report_proc = opts or "no hidepid"
    else:
        report_proc = "absent"
        missing.append("/proc")
    null_src = src("/dev/null")
    for mask in section.masks:
        dst = new + mask.dst
        if not os.path.lexists(dst):
            continue
        if mask.kind == "dir":
            _mount_child("tmpfs", dst, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0000")
        elif null_src is not None:
            _mount_child(null_src, dst, None, MS_BIND)
            _mount_child(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    for fd in (*sources.values(), *idmaps.trees.values()):
        os.close(fd)
    sources.clear()
    idmaps.trees.clear()
    _umount_child("/oldroot")
    os.chdir(new)
    _pivot_root_child(".", ".")
    _umount_child(".")
    os.chdir("/")
    _mount_child(None, "/", None, _locked_flags_child("/") | MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _enter_workdir_child(section)
    state.report["mounts"] = {
        "root": "tmpfs" if create else section.root,
        "binds": len(section.binds) + len(section.etc_binds),
        "proc": report_proc,
        "masked": [m.why for m in section.masks],
        "skipped": list(section.skipped),
        "missing_mount_points": missing,
    }


def _enter_workdir_child(section: MountsSection) -> None:
    """CHILD side: chdir into the project folder (``cwd``), else ``workdir``.

    The project folder not entered is an error naming it (never a silent empty cwd:
    the analyst's relative paths would all fail with FileNotFoundError).
    """
    if section.cwd:
        try:
            os.chdir(section.cwd)
            return
        except OSError as exc:
            hint = "the sandbox user cannot enter the project folder; fix: chmod o+rx it, or chown it to the analyst"
            if exc.errno == errno.ENOENT:
                hint = f"no mount point for the project folder (a given root must hold {section.cwd})"
            raise ConfinementError("mounts", f"chdir({section.cwd!r})", exc.errno, hint) from exc
    try:
        os.chdir(section.workdir)
    except OSError:
        os.chdir("/tmp" if os.path.isdir("/tmp") else "/")


def make_trees_child(section: MountsSection | None, state: ChildState) -> None:
    """CHILD side, still host root in the host user namespace (before ``unshare``): the
    detached idmapped trees of the plan's idmapped binds (:func:`.idmaps.idmapped_tree`).

    Only host root may idmap a mount; the worker moves each tree onto its bind's
    mount point in its own root (:func:`setup_root_child`).
    """
    if not section or not section.enabled:
        return
    for bind in section.binds:
        if len(bind.idmap) == 2 and bind.src not in idmaps.trees:
            try:
                idmaps.trees[bind.src] = idmaps.idmapped_tree(bind.src, bind.idmap[0], bind.idmap[1])
            except OSError as exc:
                raise ConfinementError("mounts", f"idmapped bind of {bind.src!r}", exc.errno) from exc


def _setup_dev_child(
    section: MountsSection, new: str, src: Callable[[str], str | None], create: bool, missing: list[str]
) -> None:
    """CHILD side: a tmpfs /dev with the listed nodes bound from the host, /dev/shm, fd links."""
    dev = new + "/dev"
    if not _make_point_child(dev, "dir", create):
        missing.append("/dev")
        return
    _mount_child("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in section.dev:
        host = src(f"/dev/{name}")
        if host is None or not stat.S_ISCHR(os.stat(host).st_mode):
            continue
        _make_point_child(f"{dev}/{name}", "file", True)
        _bind_child(host, f"{dev}/{name}", rw=True, nodev=False)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")
    _setup_devpts_child(dev, section.ptys)
    # /dev/shm is a folder of the scratch tmpfs, like /tmp and the working
    # directory: the disk quota holds for all three together, not for each.
    os.mkdir(dev + "/shm", 0o1777)
    os.mkdir("/scratch/shm", 0o1777)
    os.chmod("/scratch/shm", 0o1777)
    _mount_child("/scratch/shm", dev + "/shm", None, MS_BIND)
    _mount_child(None, dev + "/shm", None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount_child(None, dev, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


def _setup_devpts_child(dev: str, ptys: int) -> None:
    """CHILD side: a private devpts instance of at most ``ptys`` ptys (``!cmd`` and ``%pip`` need a pty),
    ``/dev/ptmx`` into it; none at all for ``ptys`` 0 (see :data:`.mounts.PTYS_MAX`).

    Its ptys are the sandbox's own: no host terminal is reachable. Where the
    kernel refuses the mount, there are no ptys (as before), nothing else changes.
    """
    if ptys <= 0:
        return
    os.mkdir(dev + "/pts", 0o755)
    try:
        opts = f"newinstance,ptmxmode=0666,mode=0620,max={int(ptys)}"
        _mount_child("devpts", dev + "/pts", "devpts", MS_NOSUID | MS_NOEXEC, opts)
    except ConfinementError:
        return
    os.symlink("pts/ptmx", dev + "/ptmx")


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _setup_scratch_child(section: MountsSection, new: str, create: bool, missing: list[str]) -> None:
    """CHILD side: /tmp and the working directory, both on the scratch tmpfs."""
    os.mkdir("/scratch/tmp", 0o1777)
    os.chmod("/scratch/tmp", 0o1777)
    workdir = section.workdir
    uid, gid = section.uid, section.gid
    if _make_point_child(new + "/tmp", "dir", create):
        _mount_child("/scratch/tmp", new + "/tmp", None, MS_BIND | MS_NOSUID | MS_NODEV)
    else:
        missing.append("/tmp")
    if workdir == "/tmp" or workdir.startswith("/tmp/"):
        target = "/scratch" + workdir
        os.makedirs(target, mode=0o700, exist_ok=True)
        os.chown(target, uid, gid)
        return
    os.mkdir("/scratch/work", 0o700)
    os.chown("/scratch/work", uid, gid)
    if _make_point_child(new + workdir, "dir", create):
        _mount_child("/scratch/work", new + workdir, None, MS_BIND | MS_NOSUID | MS_NODEV)
    else:
        missing.append(workdir)
