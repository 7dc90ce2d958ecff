"""Step: the seccomp BPF filter, written in pure Python (no libseccomp).

Host side: :func:`plan_seccomp`, :func:`notify_supported`,
:func:`build_filter` (pure: a list of ``(code, jt, jf, k)`` instructions)
and the decoding tables the supervisor uses (:func:`syscall_name`).
Child side: :func:`install_child` loads the filter with
``seccomp(SECCOMP_SET_MODE_FILTER)``, asking for a user-notification
listener fd when the supervisor is wanted. It is the last step: after it the
worker cannot change any of its confinement.

The filter, the same at every level apart from execve::

    arch != this machine's AUDIT_ARCH     -> KILL_PROCESS
    x32 syscall numbers (x86_64)          -> ERRNO(EPERM)
    escape-class syscalls (ESCAPE)        -> USER_NOTIF (supervisor) or ERRNO(EPERM)
    clone(flags & CLONE_NEW*)             -> USER_NOTIF or ERRNO(EPERM)
    clone3                                -> ERRNO(ENOSYS)   (libc falls back to clone)
    ioctl(TIOCSTI / TIOCLINUX)            -> USER_NOTIF or ERRNO(EPERM)
    Docker's other default denials (DENY) -> ERRNO(EPERM)
    personality(not one of Docker's)      -> ERRNO(EPERM)
    socket(AF_INET/AF_INET6/AF_PACKET)    -> USER_NOTIF or EPERM, only with deny_inet (BASIC, no network)
    execve/execveat                       -> STRICT: USER_NOTIF (supervisor denies) or EPERM;
                                             else USER_NOTIF when the supervisor runs (it
                                             denies escape tools and lets the rest CONTINUE)
    everything else                       -> ALLOW

Allowed syscalls do not depend on their arguments, so the kernel's seccomp
action cache answers them without running the program: no hot-path cost.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
from typing import Any

from ._common import MACHINE, PR_GET_NO_NEW_PRIVS, ConfinementError, check, libc, prctl, sysno

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_GET_NOTIF_SIZES = 3
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ALLOW = 0x7FFF0000

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

BPF_LD_W_ABS = 0x20
BPF_JMP_JEQ_K = 0x15
BPF_JMP_JGE_K = 0x35
BPF_JMP_JSET_K = 0x45
BPF_RET_K = 0x06

CLONE_NEW_MASK = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
AF_INET = 2
AF_INET6 = 10
AF_PACKET = 17
#: personality(2) values Docker's default profile allows.
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

#: Escape-class syscalls: sent to the supervisor (recorded, denied).
ESCAPE = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "pidfd_getfd",
)
#: The rest of Docker's default denials: plain EPERM, not recorded.
DENY = (
    "clock_adjtime",
    "clock_settime",
    "settimeofday",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
    "ioperm",
    "iopl",
    "kcmp",
    "lookup_dcookie",
    "quotactl",
    "quotactl_fd",
    "sysfs",
    "_sysctl",
    "uselib",
    "ustat",
    "vhangup",
    "syslog",
    "get_mempolicy",
    "set_mempolicy",
    "mbind",
    "move_pages",
    "name_to_handle_at",
    "fanotify_init",
    "setdomainname",
    "sethostname",
    "process_madvise",
)
#: Basenames whose execve is an escape attempt.
ESCAPE_TOOLS = frozenset({"ptrace", "gdb", "strace", "nsenter", "unshare", "mount", "chroot", "insmod", "modprobe"})

# fmt: off
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "mount": 165,
        "umount2": 166, "pivot_root": 155, "unshare": 272, "setns": 308, "bpf": 321,
        "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249,
        "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "kexec_load": 246, "kexec_file_load": 320,
        "init_module": 175, "finit_module": 313, "delete_module": 176,
        "open_by_handle_at": 304, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429,
        "open_tree": 428, "mount_setattr": 442, "pidfd_getfd": 438, "chroot": 161, "clone": 56,
        "clone3": 435, "ioctl": 16, "execve": 59, "execveat": 322, "personality": 135,
        "socket": 41, "clock_adjtime": 305, "clock_settime": 227, "settimeofday": 164,
        "create_module": 174, "get_kernel_syms": 177, "query_module": 178, "nfsservctl": 180,
        "ioperm": 173, "iopl": 172, "kcmp": 312, "lookup_dcookie": 212, "quotactl": 179,
        "quotactl_fd": 443, "sysfs": 139, "_sysctl": 156, "uselib": 134, "ustat": 136,
        "vhangup": 153, "syslog": 103, "get_mempolicy": 239, "set_mempolicy": 238,
        "mbind": 237, "move_pages": 279, "name_to_handle_at": 303, "fanotify_init": 300,
        "setdomainname": 171, "sethostname": 170, "process_madvise": 440,
    },
    "aarch64": {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "mount": 40,
        "umount2": 39, "pivot_root": 41, "unshare": 97, "setns": 268, "bpf": 280,
        "perf_event_open": 241, "keyctl": 219, "add_key": 217, "request_key": 218,
        "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "kexec_load": 104, "kexec_file_load": 294,
        "init_module": 105, "finit_module": 273, "delete_module": 106,
        "open_by_handle_at": 265, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429,
        "open_tree": 428, "mount_setattr": 442, "pidfd_getfd": 438, "chroot": 51, "clone": 220,
        "clone3": 435, "ioctl": 29, "execve": 221, "execveat": 281, "personality": 92,
        "socket": 198, "clock_adjtime": 266, "clock_settime": 112, "settimeofday": 170,
        "nfsservctl": 42, "kcmp": 272, "lookup_dcookie": 18, "quotactl": 60,
        "quotactl_fd": 443, "vhangup": 58, "syslog": 116, "get_mempolicy": 236,
        "set_mempolicy": 237, "mbind": 235, "move_pages": 239, "name_to_handle_at": 264,
        "fanotify_init": 262, "setdomainname": 162, "sethostname": 161, "process_madvise": 440,
    },
}
# fmt: on
_ARCH_BY_AUDIT = {v: k for k, v in AUDIT_ARCH.items()}


def syscall_name(nr: int, audit_arch: int | None = None) -> str:
    """Name of syscall ``nr`` (for the supervisor's records); ``syscall_<nr>`` if unknown."""
    arch = _ARCH_BY_AUDIT.get(audit_arch, MACHINE) if audit_arch is not None else MACHINE
    for name, num in SYSCALLS.get(arch, {}).items():
        if num == nr:
            return name
    return f"syscall_{nr}"


def syscall_number(name: str, arch: str = MACHINE) -> int | None:
    """Number of ``name`` on ``arch`` (None when this table does not know it)."""
    return SYSCALLS.get(arch, {}).get(name)


def supported() -> tuple[bool, str]:
    """HOST side: whether this machine can load our filter, and why not."""
    if MACHINE not in SYSCALLS:
        return False, f"no syscall table for machine {MACHINE!r}"
    if sysno("seccomp") is None:
        return False, "seccomp syscall number unknown"
    try:
        with open("/proc/self/status") as f:
            if "Seccomp:" not in f.read():
                return False, "kernel built without CONFIG_SECCOMP"
    except OSError:
        return False, "/proc/self/status unreadable"
    return True, "seccomp filter mode"


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class _NotifSizes(ctypes.Structure):
    _fields_ = [
        ("seccomp_notif", ctypes.c_uint16),
        ("seccomp_notif_resp", ctypes.c_uint16),
        ("seccomp_data", ctypes.c_uint16),
    ]


NOTIF_SIZE = 80
NOTIF_RESP_SIZE = 24
SECCOMP_DATA_SIZE = 64


@functools.cache
def notify_supported() -> bool:
    """HOST side: whether user notifications (and their CONTINUE flag) work here."""
    ok, _ = supported()
    if not ok:
        return False
    nr = sysno("seccomp")
    action = ctypes.c_uint32(SECCOMP_RET_USER_NOTIF)
    if libc().syscall(nr, SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(action)) != 0:
        return False
    sizes = _NotifSizes()
    if libc().syscall(nr, SECCOMP_GET_NOTIF_SIZES, 0, ctypes.byref(sizes)) != 0:
        return False
    if sizes.seccomp_notif != NOTIF_SIZE or sizes.seccomp_notif_resp != NOTIF_RESP_SIZE:
        return False
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 5)  # SECCOMP_USER_NOTIF_FLAG_CONTINUE


def plan_seccomp(
    *,
    deny_exec: bool,
    notify: bool,
    exec_notify: bool = True,
    deny_inet: bool = False,
) -> dict[str, Any]:
    """HOST side: the seccomp section of a child plan.

    ``deny_exec``: STRICT (execve of new programs denied). ``notify``: send
    escape-class syscalls to the host supervisor (only when
    :func:`notify_supported`). ``exec_notify``: with ``notify`` and without
    ``deny_exec``, let the supervisor see every execve to catch escape tools.
    ``deny_inet``: deny IPv4/IPv6/packet sockets (BASIC without network).
    """
    notify = notify and notify_supported()
    return {
        "enabled": True,
        "arch": MACHINE,
        "deny_exec": deny_exec,
        "notify": notify,
        "exec_notify": notify and exec_notify,
        "deny_inet": deny_inet,
        "detection": "supervisor" if notify else "not possible: seccomp user notifications unavailable",
    }


def _ret(k: int) -> tuple[int, int, int, int]:
    return (BPF_RET_K, 0, 0, k)


def _ld(offset: int) -> tuple[int, int, int, int]:
    return (BPF_LD_W_ABS, 0, 0, offset)


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # seccomp_data.args[i], low 32 bits (little endian)


def build_filter(section: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """The BPF program for ``section`` as ``(code, jt, jf, k)`` tuples (pure; either side)."""
    arch = section.get("arch", MACHINE)
    table = SYSCALLS[arch]
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    notify = SECCOMP_RET_USER_NOTIF if section.get("notify") else eperm
    prog: list[tuple[int, int, int, int]] = [
        _ld(4),
        (BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH[arch]),
        _ret(SECCOMP_RET_KILL_PROCESS),
        _ld(0),
    ]
    if arch == "x86_64":
        prog += [(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT), _ret(eperm)]

    def simple(name: str, action: int) -> None:
        nr = table.get(name)
        if nr is not None:
            prog.extend([(BPF_JMP_JEQ_K, 0, 1, nr), _ret(action)])

    def arg_in(name: str, arg: int, values: tuple[int, ...], hit: int, miss: int) -> None:
        nr = table.get(name)
        if nr is None:
            return
        n = len(values)
        body = [_ld(_arg_lo(arg))]
        body += [(BPF_JMP_JEQ_K, n - i, 0, v) for i, v in enumerate(values)]
        body += [_ret(miss), _ret(hit)]
        prog.append((BPF_JMP_JEQ_K, 0, len(body), nr))
        prog.extend(body)

    for name in ESCAPE:
        simple(name, notify)
    for name in DENY:
        simple(name, eperm)
    clone = table["clone"]
    prog += [
        (BPF_JMP_JEQ_K, 0, 4, clone),
        _ld(_arg_lo(0)),
        (BPF_JMP_JSET_K, 0, 1, CLONE_NEW_MASK),
        _ret(notify),
        _ret(SECCOMP_RET_ALLOW),
    ]
    simple("clone3", SECCOMP_RET_ERRNO | errno.ENOSYS)
    arg_in("ioctl", 1, (TIOCSTI, TIOCLINUX), notify, SECCOMP_RET_ALLOW)
    arg_in("personality", 0, PERSONALITY_ALLOWED, SECCOMP_RET_ALLOW, eperm)
    if section.get("deny_inet"):
        arg_in("socket", 0, (AF_INET, AF_INET6, AF_PACKET), notify, SECCOMP_RET_ALLOW)
    if section.get("deny_exec"):
        exec_action = notify
    elif section.get("exec_notify"):
        exec_action = SECCOMP_RET_USER_NOTIF
    else:
        exec_action = SECCOMP_RET_ALLOW
    if exec_action != SECCOMP_RET_ALLOW:
        simple("execve", exec_action)
        simple("execveat", exec_action)
    prog.append(_ret(SECCOMP_RET_ALLOW))
    if len(prog) > 4096:
        raise ValueError("seccomp program too long")
    return prog


def install_child(section: dict[str, Any] | None, report: dict[str, Any]) -> int | None:
    """CHILD side: load the filter; returns the listener fd when notifications are on.

    Needs no_new_privs (or CAP_SYS_ADMIN). The caller must hand the listener
    fd to the host and close it: the sandboxed code must never hold it.
    """
    if not section or not section.get("enabled"):
        return None
    if section.get("arch", MACHINE) != MACHINE:
        raise ConfinementError("seccomp", f"filter for {section.get('arch')} on {MACHINE}")
    prog = build_filter(section)
    arr = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
    fprog = _SockFprog(len(prog), ctypes.cast(arr, ctypes.POINTER(_SockFilter)))
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER if section.get("notify") else 0
    hint = ""
    if prctl(PR_GET_NO_NEW_PRIVS) != 1:
        hint = "set no_new_privs first"
    res = check(
        "seccomp",
        "seccomp(SECCOMP_SET_MODE_FILTER)",
        int(libc().syscall(sysno("seccomp"), SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog))),
        hint or "this requires a kernel configured with CONFIG_SECCOMP_FILTER",
    )
    report["seccomp"] = {
        "instructions": len(prog),
        "deny_exec": bool(section.get("deny_exec")),
        "detection": section.get("detection", "supervisor"),
    }
    return res if section.get("notify") else None


def pack_notif_resp(notif_id: int, *, error: int = 0, val: int = 0, flags: int = 0) -> bytes:
    """``struct seccomp_notif_resp`` bytes (host side, for the supervisor)."""
    return struct.pack("=QqiI", notif_id, val, error, flags)
