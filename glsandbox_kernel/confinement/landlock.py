"""Step: Landlock, the filesystem allowlist enforced by the kernel (no root needed).

Host side: :func:`landlock_abi` (0 when the kernel has no Landlock) and
:func:`plan_landlock`, which lists the paths the worker may read/execute and
the paths it may also write. Child side: :func:`restrict_child` builds the
ruleset with ``landlock_create_ruleset``/``landlock_add_rule`` and calls
``landlock_restrict_self`` (needs no_new_privs first).

Handled access rights grow with the ABI: file system rights (ABI 1),
``REFER`` (2), ``TRUNCATE`` (3), TCP bind/connect (4), ``IOCTL_DEV`` (5),
and scoping of abstract Unix sockets and signals to the sandbox (6). Whatever
this kernel does not know is left out, so the same plan works on every ABI.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import stat
import sys
from typing import Any

from ..exceptions import BackendUnavailableError
from ..linux import libc, sysno
from ._common import ChildState, ConfinementError, PlanContext, check

LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13
FS_TRUNCATE = 1 << 14
FS_IOCTL_DEV = 1 << 15

NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

_FS_ABI1 = (1 << 13) - 1
_FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

RO = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
RW = _FS_ABI1 & ~(FS_MAKE_CHAR | FS_MAKE_BLOCK) | FS_REFER | FS_TRUNCATE
DEV = FS_READ_FILE | FS_WRITE_FILE | FS_READ_DIR | FS_IOCTL_DEV | FS_TRUNCATE

#: /etc entries a BASIC worker may read on the host (no shadow, no secrets).
HOST_ETC_READABLE = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/alternatives",
    "/etc/fonts",
    "/etc/protocols",
    "/etc/services",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/passwd",
    "/etc/group",
)
DEV_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


@functools.cache
def landlock_abi() -> int:
    """The Landlock ABI version of this kernel, 0 when unavailable (either side)."""
    if not sys.platform.startswith("linux"):
        return 0
    nr = sysno("landlock_create_ruleset")
    if nr is None:
        return 0
    res = libc().syscall(nr, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return int(res) if res > 0 else 0


def fs_access_for_abi(abi: int) -> int:
    """All file-system rights this ABI can handle."""
    mask = _FS_ABI1
    if abi >= 2:
        mask |= FS_REFER
    if abi >= 3:
        mask |= FS_TRUNCATE
    if abi >= 5:
        mask |= FS_IOCTL_DEV
    return mask


@dataclasses.dataclass(frozen=True, kw_only=True)
class LandlockSection:
    """The landlock section (see :func:`plan_landlock`): paths as the worker sees them."""

    enabled: bool = True
    ro: tuple[str, ...] = ()
    rw: tuple[str, ...] = ()
    dev: tuple[str, ...] = DEV_FILES
    list_only: tuple[str, ...] = ()
    deny_tcp: bool = False
    tcp_connect_ports: tuple[int, ...] = ()
    scope: bool = True
    required: bool = False


def plan_landlock(
    *,
    read_only: list[str],
    read_write: list[str],
    devices: list[str] | tuple[str, ...] = DEV_FILES,
    list_only: list[str] | tuple[str, ...] = (),
    tcp_connect_ports: list[int] | None = None,
    deny_tcp: bool = False,
    scope: bool = True,
    required: bool = False,
) -> LandlockSection:
    """HOST side: the landlock section of a child plan.

    Paths are as the worker sees them (inside the new root for NAMESPACE,
    host paths for BASIC). ``list_only``: directories (and all below them)
    that may be listed but not read. ``deny_tcp`` handles TCP bind/connect (ABI >= 4)
    and allows only ``tcp_connect_ports``. ``scope`` confines abstract Unix
    sockets and signals to the sandbox (ABI >= 6): the worker cannot signal
    the host. ``required``: fail instead of falling back when the kernel
    has no Landlock.
    """
    return LandlockSection(
        ro=tuple(sorted(set(read_only))),
        rw=tuple(sorted(set(read_write))),
        dev=tuple(devices),
        list_only=tuple(list_only),
        deny_tcp=deny_tcp,
        tcp_connect_ports=tuple(tcp_connect_ports or ()),
        scope=scope,
        required=required,
    )


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def plan_step(ctx: PlanContext) -> LandlockSection:
    """HOST side: the same filesystem allowlist the mounts step builds, enforced by the kernel.

    With a root of its own (a mounts section): what is bound there, as the
    worker sees it (its /dev/shm is a private tmpfs). On the host's
    filesystem: the system and Python directories, the interpreter's import
    path (minus blocked paths), the readable /etc entries, the user's paths
    and the working directory; not the host's shared /dev/shm.
    TCP is handled (denied) where the profile cannot route traffic through
    the proxy and the config allows no network.
    """
    from ..project import environment_listed, layout_for
    from . import mounts

    config, profile = ctx.config, ctx.profile
    m = ctx.sections.get("mounts")
    devices = list(DEV_FILES)
    if isinstance(m, mounts.MountsSection):
        read_only = [b.dst for b in m.binds if not b.rw] + ["/etc", "/proc"]
        if m.mode == "given_root":
            read_only.append("/")  # a given root is the user's choice, mounted read-only
        read_only += [s.dst for s in m.symlinks if not s.dst.startswith("/etc/")]
        read_write = [b.dst for b in m.binds if b.rw] + ["/tmp", m.workdir, "/dev/shm"]
        list_only = ["/"]
        if m.ptys:
            devices.append("/dev/pts")  # the sandbox's private devpts (ptys for !cmd)
    else:
        read_only = [d for d in mounts.SYSTEM_DIRS if os.path.exists(d)] + [*HOST_ETC_READABLE, "/proc"]
        # Not /dev/shm: on the host's filesystem it is shared with every other process
        # and outlives the sandbox; POSIX shared memory is denied there instead.
        read_write = [ctx.workdir]
        layout = layout_for(ctx)
        list_only = environment_listed()  # an editable checkout: listable, its packages granted
        # Landlock grants whole trees: a folder holding a masked name is split around it.
        for folder in mounts.python_paths() + list(layout.readonly):
            shown_list, shown = _grants(folder, layout)
            list_only += shown_list
            read_only += shown
        for folder in layout.writable:
            shown_list, shown = _grants(folder, layout)
            if shown_list and folder == layout.output_dir:  # the sandbox's own: read-only this session
                ctx.report["output_folder"] = f"{folder}: read-only, it holds masked names Landlock cannot hide"
                continue
            if shown_list:
                names = ", ".join(p for p, _ in layout.masked if p.startswith(folder.rstrip("/") + "/"))
                raise BackendUnavailableError(
                    "basic",
                    f"cannot let the sandbox write {folder} while hiding the secrets in it ({names[:300]}): "
                    "Landlock grants whole folders",
                    "use isolation 'namespace', move the secrets out, or let the folder be read-only "
                    "(project_access='read' with the output folder)",
                )
            python_inside = [e for e in mounts.python_paths() if _inside(e, folder)]
            if python_inside:
                raise BackendUnavailableError(
                    "basic",
                    f"cannot let the sandbox write {folder}: the host's Python environment lies inside it "
                    f"({', '.join(python_inside)[:300]}), and Landlock grants whole folders, so a cell could change "
                    "code the host runs (a .pth file runs at its next start)",
                    "use isolation 'namespace' (it shows the environment read-only), keep the environment outside "
                    "the folder, or let the folder be read-only (project_access='read' with the output folder)",
                )
            read_write += shown
    if landlock_abi() == 0:
        ctx.report["landlock"] = "unavailable: kernel has no Landlock"
    return plan_landlock(
        read_only=read_only,
        read_write=read_write,
        devices=devices,
        list_only=list_only,
        deny_tcp=profile.network == "deny_only" and config.network.mode == "none",
    )


def _grants(folder: str, layout: Any) -> tuple[list[str], list[str]]:
    from ..project import landlock_grants

    return landlock_grants(folder, layout.masked)


def restrict_child(section: LandlockSection | None, state: ChildState) -> None:
    """CHILD side: build the ruleset for this ABI and restrict this process.

    No Landlock in the kernel: reported as a fallback, or a
    :class:`ConfinementError` when the plan says ``required``.
    """
    if not section or not section.enabled:
        return
    report = state.report
    abi = landlock_abi()
    if abi <= 0:
        if section.required:
            raise ConfinementError(
                "landlock",
                "landlock_create_ruleset",
                None,
                "this kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, lsm=landlock)",
            )
        report["landlock"] = "unavailable: kernel has no Landlock"
        return
    handled_fs = fs_access_for_abi(abi)
    attr = _RulesetAttr(handled_fs, 0, 0)
    size = 8
    if abi >= 4 and section.deny_tcp:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if abi >= 6 and section.scope:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    lib = libc()
    nr_create = sysno("landlock_create_ruleset")
    nr_add = sysno("landlock_add_rule")
    nr_restrict = sysno("landlock_restrict_self")
    rfd = check(
        "landlock", "landlock_create_ruleset", int(lib.syscall(nr_create, ctypes.byref(attr), ctypes.c_size_t(size), 0))
    )
    rules = 0
    try:
        for paths, access in (
            (section.ro, RO),
            (section.rw, RW),
            (section.dev, DEV),
            (section.list_only, FS_READ_DIR),
        ):
            for path in paths:
                rules += _add_path_rule_child(rfd, nr_add, path, access & handled_fs)
        if attr.handled_access_net:
            for port in section.tcp_connect_ports:
                rule = _NetPortAttr(NET_CONNECT_TCP, port)
                check(
                    "landlock",
                    f"landlock_add_rule(NET_PORT {port})",
                    int(lib.syscall(nr_add, rfd, LANDLOCK_RULE_NET_PORT, ctypes.byref(rule), 0)),
                )
        check("landlock", "landlock_restrict_self", int(lib.syscall(nr_restrict, rfd, 0)))
    finally:
        os.close(rfd)
    report["landlock"] = {
        "abi": abi,
        "rules": rules,
        "tcp": "denied" if attr.handled_access_net else "not handled",
        "scoped": bool(attr.scoped),
    }


def _add_path_rule_child(rfd: int, nr_add: int | None, path: str, access: int) -> int:
    """CHILD side: one PATH_BENEATH rule; a missing path is skipped (returns 0)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_ONLY
        rule = _PathBeneathAttr(access, fd)
        check(
            "landlock",
            f"landlock_add_rule({path!r})",
            int(libc().syscall(nr_add, rfd, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0)),
        )
    finally:
        os.close(fd)
    return 1
