"""Step: the worker's root filesystem (mount namespace, binds, pivot_root).

Host side: :func:`plan_mounts` lists, in a frozen :class:`MountsSection`,
everything the child will do: which
host paths are bound where (already resolved with ``realpath``, so the child
never follows a host symlink), which symlinks and /etc files are created,
which blocked paths must be masked.

Child side (:mod:`.mounts_child`): :func:`~.mounts_child.setup_root_child`,
modelled on bubblewrap's ``setup_newroot``. It runs in the worker P3, inside the new user, mount and
pid namespaces::

    mount --make-rprivate /
    mount -t tmpfs tmpfs /tmp                 # "base", only visible to us
    mkdir /tmp/newroot /tmp/oldroot /tmp/scratch
    mount -t tmpfs tmpfs /tmp/newroot         # or a bind of FilesystemConfig.root
    mount -t tmpfs -o size=QUOTA tmpfs /tmp/scratch
    pivot_root /tmp /tmp/oldroot              # now / = base, /oldroot = host
    mount --bind /oldroot/SRC /newroot/DST    # then remount ro,nosuid,nodev
    ... /etc files, /dev nodes, /proc, /tmp and workdir from scratch, masks
    ... sources are O_PATH fds opened earlier by P1 (open_sources_child)
    umount -l /oldroot
    cd /newroot; pivot_root . .; umount -l .  # newroot becomes /
    mount -o remount,bind,ro /                # the root tmpfs is read-only

The private /tmp and the working directory live on one tmpfs of
``disk_quota_bytes``, so together they cannot exceed the quota.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Any, Literal

from ..config import OSSandboxConfig
from ..exceptions import SandboxConfigError
from ..project import ProjectLayout
from ._common import PlanContext

#: System directories bound read-only (or recreated as symlinks).
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
#: Entries of the host's /etc bound read-only; nothing with secrets.
ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "localtime",
    "timezone",
    "mime.types",
    "os-release",
    "alternatives",
    "fonts",
    "protocols",
    "services",
    "gai.conf",
    "host.conf",
)
#: Ptys a sandbox that may run programs (``!cmd``, ``%pip``: MODERATE, LENIENT) may hold at once, its
#: devpts instance's ``max=``. Every instance counts in the machine-wide ``kernel.pty.nr`` (at most
#: ``kernel.pty.max`` less ``kernel.pty.reserve`` for all of them): unbounded, a MODERATE sandbox held
#: 150 (its open-file limit), a process tree far more, leaving none to other sandboxes. STRICT, which
#: runs no program, gets no devpts at all.
PTYS_MAX = 8

#: Device nodes bound from the host's /dev (no tty, no block devices).
DEV_NODES = ("null", "zero", "full", "random", "urandom")
#: In-sandbox path of the network proxy's Unix socket.
PROXY_SOCKET_PATH = "/run/glsandbox/proxy.sock"

_ROOT_TMPFS_SIZE = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bind:
    """A host path (resolved) bound at ``dst``; ``kind`` is "dir" or "file"."""

    src: str
    dst: str
    rw: bool
    kind: Literal["dir", "file"]
    #: (uid, gid): a read-only idmapped bind whose on-disk uid/gid 0 appear as these host ids
    #: (a root-owned read-only project folder, see :func:`.idmaps.idmapped_tree`); () a plain bind.
    idmap: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Symlink:
    dst: str
    target: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Mask:
    """A blocked path inside a bind, hidden by an empty tmpfs (dir) or /dev/null (file)."""

    dst: str
    kind: Literal["dir", "file"]
    why: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class SocketBind:
    src: str
    dst: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class MountsSection:
    """The mounts section of a child plan (see :func:`plan_mounts`)."""

    enabled: bool = True
    mode: Literal["tmpfs_root", "given_root"]
    root: str | None
    root_size: int
    scratch_size: int | None
    workdir: str
    uid: int
    gid: int
    binds: tuple[Bind, ...]
    etc_binds: tuple[Bind, ...]
    symlinks: tuple[Symlink, ...]
    etc_files: dict[str, str]
    dev: tuple[str, ...]
    proc_hidepid: int
    masks: tuple[Mask, ...]
    skipped: tuple[str, ...]
    proxy_socket: SocketBind | None
    #: the working directory inside: the project folder's path (an empty read-only folder
    #: when it is hidden), or None for ``workdir``.
    cwd: str | None = None
    #: ptys of the sandbox's private devpts (its ``max=``); 0: no devpts, no /dev/ptmx.
    ptys: int = 0


def python_paths() -> list[str]:
    """HOST side: the directories the interpreter needs, resolved, outermost only.

    See :func:`glsandbox_kernel.project.environment_paths`: the prefixes,
    the interpreter's directory, this package's own folder and ``.pth``
    folders; never ``sys.path`` as it is, the working directory or PYTHONPATH.
    """
    from ..project import environment_paths

    return environment_paths()


def _outermost(paths: Any) -> list[str]:
    out: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def _under(path: str, parent: str) -> bool:
    parent = parent.rstrip("/") or "/"
    return path == parent or path.startswith(parent + "/") or parent == "/"


def blocked_by(path: str, blocked: tuple[str, ...], allowed: tuple[str, ...] = ()) -> str | None:
    """The blocked path hiding ``path``, unless a more specific allowed path wins."""
    hit = None
    for b in blocked:
        if _under(path, b) and (hit is None or len(b) > len(hit)):
            hit = b
    if hit is None:
        return None
    for a in allowed:
        if _under(path, a) and len(a) > len(hit):
            return None
    return hit


def plan_mounts(
    config: OSSandboxConfig,
    *,
    workdir: str,
    uid: int,
    gid: int,
    proxy_socket: str | None = None,
    extra_readonly: tuple[str, ...] = (),
    layout: ProjectLayout | None = None,
    host_ids: tuple[int, int] | None = None,
) -> MountsSection:
    """HOST side: the mounts section of a child plan.

    ``layout`` (:func:`glsandbox_kernel.project.project_layout`) names the
    project folder and the user's paths, each bound at its own path with
    its masked names hidden, and the working directory (``cwd``).

    ``workdir`` is the worker's working directory *inside* the sandbox (it
    is backed by the scratch tmpfs, nothing of the host's is bound there).
    ``uid``/``gid`` own the working directory. With ``FilesystemConfig.root``
    set, that directory becomes the root instead of a fresh tmpfs (CHROOT):
    it brings its own /usr, /lib and /etc; the interpreter's directories and
    ``readonly_paths``/``writable_paths`` are bound only where the root has
    a directory (or file) to mount on, so the root is never modified.
    ``host_ids``: the host uid/gid the worker runs as (see :func:`project_entry`).
    """
    fs = config.filesystem
    blocked = tuple(os.path.normpath(b) for b in fs.blocked_paths)
    given_root = os.path.realpath(fs.root) if fs.root else None
    report_skipped: list[str] = []
    binds: list[dict[str, Any]] = []
    symlinks: list[dict[str, str]] = []
    seen_dst: set[str] = set()

    def add_bind(src: str, dst: str, *, rw: bool, exempt: bool = False, allowed: tuple[str, ...] = ()) -> None:
        src_abs = os.path.abspath(src)
        if any(
            b["dst"] == b["src"] and _under(src_abs, b["src"]) and src_abs == dst and (b["rw"] or not rw) for b in binds
        ):
            return  # already visible (as writable as asked) through an enclosing bind
        if not exempt:
            hit = blocked_by(src_abs, blocked, allowed)
            if hit is not None:
                report_skipped.append(f"{src_abs} (blocked by {hit})")
                return
        real = os.path.realpath(src_abs)
        if not os.path.exists(real):
            return
        if dst in seen_dst:
            return
        seen_dst.add(dst)
        kind = "dir" if os.path.isdir(real) else "file"
        binds.append({"src": real, "dst": dst, "rw": rw, "kind": kind})

    if given_root is None:  # a given root (CHROOT) brings its own system directories
        for d in SYSTEM_DIRS:
            if os.path.islink(d):
                symlinks.append({"dst": d, "target": os.readlink(d)})
            elif os.path.isdir(d):
                add_bind(d, d, rw=False)
    for p in python_paths():
        add_bind(p, p, rw=False, exempt=True)
    if layout is None:
        from ..project import project_layout

        layout = project_layout(config)
    # The project folder (as the level shows it) and the user's paths, at their own paths.
    user_ro = tuple(layout.readonly) + tuple(os.path.abspath(p) for p in extra_readonly)
    user_rw = tuple(layout.writable)
    allowed = user_ro + user_rw
    for p in user_ro:
        add_bind(p, p, rw=False, allowed=allowed)
    for p in user_rw:
        add_bind(p, p, rw=True, allowed=allowed)
    idmap = project_entry(layout, host_ids)
    for entry in binds:
        if idmap and entry["src"] == layout.project and not entry["rw"]:
            entry["idmap"] = idmap
    # Bind longer destinations after their parents, so parents never cover them.
    binds.sort(key=lambda b: b["dst"].count("/"))

    etc_binds: list[dict[str, Any]] = []
    etc_files: dict[str, str] = {}
    if given_root is None:
        for name in ETC_ENTRIES:
            host = "/etc/" + name
            if os.path.islink(host):
                symlinks.append({"dst": host, "target": os.readlink(host)})
            elif os.path.exists(host):
                etc_binds.append(
                    {"src": host, "dst": host, "rw": False, "kind": "dir" if os.path.isdir(host) else "file"}
                )
        etc_files = _etc_files(uid, gid)

    masks: list[dict[str, Any]] = []
    for b in blocked:
        for bind in binds:
            src = bind["src"]
            if b != src and b.startswith(src.rstrip("/") + "/") and os.path.lexists(b):
                inside = bind["dst"].rstrip("/") + b[len(src.rstrip("/")) :]
                kind = "dir" if os.path.isdir(b) else "file"
                masks.append({"dst": inside, "kind": kind, "why": b})
    # Secrets inside a shown folder (FilesystemConfig.masked_names), at every level.
    for path, kind in layout.masked:
        if any(bind["dst"] == bind["src"] and _under(path, bind["src"]) for bind in binds):
            masks.append({"dst": path, "kind": kind, "why": f"{path} (masked name)"})

    return MountsSection(
        mode="given_root" if given_root else "tmpfs_root",
        root=given_root,
        root_size=_ROOT_TMPFS_SIZE,
        scratch_size=config.limits.disk_quota_bytes,
        workdir=os.path.normpath(workdir),
        uid=uid,
        gid=gid,
        binds=tuple(Bind(**b) for b in binds),
        etc_binds=tuple(Bind(**b) for b in etc_binds),
        symlinks=tuple(Symlink(**x) for x in symlinks),
        etc_files=etc_files,
        dev=DEV_NODES,
        proc_hidepid=2,
        masks=tuple(Mask(**x) for x in masks),
        skipped=tuple(report_skipped),
        proxy_socket=SocketBind(src=os.path.realpath(proxy_socket), dst=PROXY_SOCKET_PATH) if proxy_socket else None,
        cwd=layout.cwd,
        ptys=PTYS_MAX if config.new_programs_allowed else 0,
    )


def plan_step(ctx: PlanContext) -> MountsSection | None:
    """HOST side: a root of the profile's kind (none: the host's filesystem, no section).

    The proxy's socket is bound in only when the config allows any network
    and the host started a proxy.
    """
    p = ctx.profile
    if p.root == "host":
        return None
    if p.root == "given" and not ctx.config.filesystem.root:
        raise SandboxConfigError("filesystem.root", "this backend needs a root filesystem directory")
    use_proxy = p.network == "proxy" and ctx.config.network.mode != "none" and ctx.proxy_socket is not None
    from ..project import layout_for

    layout = layout_for(ctx)
    return plan_mounts(
        ctx.config,
        workdir=ctx.workdir,
        uid=p.uid if p.uid is not None else os.geteuid(),
        gid=p.gid if p.gid is not None else os.getegid(),
        proxy_socket=ctx.proxy_socket if use_proxy else None,
        layout=layout,
        host_ids=_host_ids(p, layout),
    )


def _host_ids(p: Any, layout: ProjectLayout) -> tuple[int, int]:
    """HOST side: the host uid/gid the worker runs as (as :mod:`.namespaces` and
    :mod:`.capabilities` plan them: the project owner's where it is not root)."""
    from ..project import writer_ids
    from .profile import UNPRIVILEGED_HOST_ID

    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    owner = writer_ids(layout)
    if owner is not None:
        return owner
    if p.user_namespace:
        return UNPRIVILEGED_HOST_ID, UNPRIVILEGED_HOST_ID
    return (p.uid, p.gid) if p.uid is not None and p.gid is not None else (0, 0)


def _can_enter(st: os.stat_result, uid: int, gid: int) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == gid:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def project_entry(layout: ProjectLayout, host_ids: tuple[int, int] | None) -> tuple[int, ...]:
    """HOST side: how the worker (host ids ``host_ids``) enters the shown project folder.

    ``()``: a plain bind, where the folder's modes let the worker in. ``(uid, gid)``: a
    read-only idmapped bind (a root-owned read-only folder it cannot enter, such as the 0700
    one ``mktemp -d`` makes, as root, where the kernel and filesystem support it: the folder
    and its root-owned files appear owned by the sandbox user). Raises :class:`SandboxConfigError` naming
    the folder, its mode and owner and the fix where the worker could not enter it: never
    a silent empty working directory.
    """
    project = layout.project
    if project is None or layout.workdir is None or host_ids is None:
        return ()
    try:
        st = os.stat(project)
    except OSError:
        return ()
    uid, gid = host_ids
    if _can_enter(st, uid, gid) if os.geteuid() == 0 else os.access(project, os.X_OK):
        return ()  # a plain bind, as the folder's modes allow
    writable = any(_under(project, w) for w in layout.writable)
    why = ""
    if os.geteuid() == 0 and st.st_uid == 0 and not writable:
        from .idmaps import idmap_supported

        ok, why = idmap_supported(project)
        if ok:
            return (uid, gid)
    mode = stat.filemode(st.st_mode)
    if st.st_uid != 0 or os.geteuid() != 0:
        how = "it is not the sandbox's to enter"
    elif writable:
        how = "a writable project of root is never idmapped"
    else:
        how = f"no idmapped bind here: {why}"
    raise SandboxConfigError(
        "filesystem.project_dir",
        f"the sandbox (host uid {uid}) cannot enter the project folder {project} "
        f"({mode} {st.st_mode & 0o7777:04o}, owner uid {st.st_uid} gid {st.st_gid}; {how}); "
        f"fix: chmod o+rx {project}, or chown it to the analyst (the sandbox then runs as that user)",
    )


def _etc_files(uid: int, gid: int) -> dict[str, str]:
    """HOST side: the generated /etc files (no host accounts, no secrets)."""
    return {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"sandbox:x:{uid}:{gid}:sandbox:/tmp:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\nsandbox:x:{gid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "hostname": "sandbox\n",
        "resolv.conf": "",
        "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\n",
    }
