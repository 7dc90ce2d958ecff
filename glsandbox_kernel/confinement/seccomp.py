"""Step: the seccomp BPF filter, written in pure Python (no libseccomp).

One policy, two outputs: :class:`SeccompPolicy` (a frozen dataclass, the
plan's seccomp section) emits both the BPF program the zygote backends load
(:meth:`SeccompPolicy.bpf`) and the OCI/Docker seccomp profile of the
container backends (:meth:`SeccompPolicy.oci_profile`), from ONE escape list
(:data:`ESCAPE`, sent to the supervisor where it runs) and ONE deny list
(:data:`DENY`, plain EPERM). A unit test checks that both deny the same set.

Host side: :func:`plan_step` (via :meth:`SeccompPolicy.for_config`), :func:`notify_supported`,
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
    clone(flags & CLONE_NEW*|CLONE_PARENT) -> USER_NOTIF or ERRNO(EPERM)
    clone3                                -> ERRNO(ENOSYS)   (libc falls back to clone)
    ioctl(TIOCSTI / TIOCLINUX)            -> USER_NOTIF or ERRNO(EPERM)
    Docker's other default denials (DENY) -> ERRNO(EPERM)
    personality(not one of Docker's)      -> ERRNO(EPERM)
    socket(AF_INET/AF_INET6/AF_PACKET)    -> USER_NOTIF or EPERM, only with deny_inet (BASIC, no network)
    socket(AF_UNIX)                       -> ERRNO(EPERM), only with deny_unix (BASIC: the host's filesystem and
                                             abstract namespace hold the Docker API, D-Bus, ssh-agent; socketpair
                                             stays; silent, as glibc probes nscd on every passwd lookup)
    socket(AF_VSOCK)                      -> ERRNO(EPERM)
    socketpair(AF_UNIX, SOCK_DGRAM)       -> ERRNO(EPERM), with deny_unix (an unbound datagram socket
                                             still sendto()s any host path)
    SysV IPC, POSIX mq, memfd, inotify   -> ERRNO(EPERM), with deny_unix (HOST_SHARED)
    setsockopt(SOL_SOCKET, SO_SNDBUF/      -> ERRNO(0), with cap_buffers (no cgroup: the outside
      SO_RCVBUF and their *FORCE)            monitor holds memory): ignored, the default size stays
    prctl(PR_SET_CHILD_SUBREAPER)         -> ERRNO(EPERM) (the worker set it before; clearing it would let
                                             orphans leave the monitored tree)
    prlimit64, setpriority, sched_set*,   -> USER_NOTIF or ERRNO(EPERM) unless on pid 0 (self), only
      ioprio_set, migrate_pages,             with own_pid_only (no pid namespace: another pid may be
      get_robust_list on another pid         the host's); PRIO_PGRP/PRIO_USER likewise (seccomp_args)
    chmod/utime/setxattr.. (path and fd)  -> ERRNO(0), with own_pid_only; FS ioctls, F_SETLEASE: EPERM
    rt_sigaction(SIGCHLD, act != NULL)    -> ERRNO(EPERM), only with keep_sigchld (CPU measured from
                                             /proc: children the kernel reaps are counted nowhere)
    execve/execveat                       -> STRICT: USER_NOTIF (supervisor denies) or EPERM; else USER_NOTIF
                                             when the supervisor runs (it denies escape tools, CONTINUEs the rest)
    everything else                       -> ALLOW

Allowed hot-path syscalls do not depend on their arguments, so the kernel's seccomp action cache answers
them without running the program; the argument rules are on calls a program makes a few times (prctl,
ioctl, socket, rt_sigaction, the scheduler calls; BASIC's fcntl).
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import functools
import os
import struct
from typing import TYPE_CHECKING, Any

from ..linux import (
    AF_UNIX,
    CLONE_DENIED_MASK,
    CLONE_FLAG_NAMES,
    INET_FAMILIES,
    INODE_IOCTLS,
    MACHINE,
    PR_SET_CHILD_SUBREAPER,
    SYSCALLS,
    TIOCLINUX,
    TIOCSTI,
    UNUSED_FAMILIES,
    libc,
    sysno,
)
from ._common import ChildState, PlanContext
from .seccomp_args import ALLOC_IOCTLS, FALLOC_DENIED, bpf_rules, fcntl_rule, oci_rules
from .seccomp_lists import COMPAT_ONLY, DENY, ESCAPE, HOST_SHARED, PERSONALITY_ALLOWED
from .seccomp_lists import ESCAPE_TOOLS as ESCAPE_TOOLS  # re-exported: the supervisor and bootstrap read it here
from .seccomp_load import BPF_MAXINSNS, check_arch, load_program, report

if TYPE_CHECKING:
    from ..config import OSSandboxConfig

SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_GET_NOTIF_SIZES = 3

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
BPF_ALU_AND_K = 0x54
_SOCK_DGRAM = 2
#: SOL_SOCKET and SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE, SO_RCVBUFFORCE (setsockopt, cap_buffers)
_SOL_SOCKET, _SOCK_BUFFERS = 1, (7, 8, 32, 33)

_ARCH_BY_AUDIT = {v: k for k, v in AUDIT_ARCH.items()}


def syscall_name(nr: int, audit_arch: int | None = None) -> str:
    """Name of syscall ``nr`` (for the supervisor's records); ``syscall_<nr>`` if unknown."""
    from ..linux import syscall_name as _name

    arch = _ARCH_BY_AUDIT.get(audit_arch, MACHINE) if audit_arch is not None else MACHINE
    return _name(nr, arch)


def syscall_number(name: str, arch: str = MACHINE) -> int | None:
    """Number of ``name`` on ``arch`` (None when this table does not know it)."""
    return sysno(name, arch)


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


_NO_DETECTION = "not possible: seccomp user notifications unavailable"
_OCI_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "amd64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "arm64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}
#: gVisor's OCI runtime: its profile answers every rule EPERM, which stops libc's fallbacks (clone3 -> clone,
#: posix_fallocate -> writes), so it keeps the EPERM rules; the others are the bootstrap's BPF filter's.
RUNSC = "runsc"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SeccompPolicy:
    """One seccomp policy; the seccomp section of a child plan (HOST side builds it).

    ``deny_exec``: STRICT (execve of new programs denied). ``notify``: send
    escape-class syscalls to the host supervisor. ``exec_notify``: with
    ``notify`` and without ``deny_exec``, let the supervisor see every execve
    to catch escape tools. ``deny_inet``: deny IPv4/IPv6/packet sockets
    (BASIC without network). ``deny_unix``: deny creating Unix sockets
    (BASIC: no mount or network namespace hides the host's), datagram
    socketpairs, the host's IPC and inotify (:data:`HOST_SHARED`). ``cap_buffers``: socket buffers stay
    the kernel's default size (see :mod:`glsandbox_kernel.sockmem`). ``own_pid_only`` (no pid
    namespace): the calls that change another process, on pid 0 only; ``keep_sigchld`` (CPU
    measured from /proc): SIGCHLD's disposition stays (both: :mod:`.seccomp_args`).
    ``detection``: what the audit record says about escape detection.

    :meth:`bpf` is the program the zygote backends load; :meth:`oci_profile`
    the Docker/OCI profile of the container backends. Both deny the same set.
    """

    enabled: bool = True
    arch: str = MACHINE
    deny_exec: bool = False
    notify: bool = False
    exec_notify: bool = False
    deny_inet: bool = False
    deny_unix: bool = False
    cap_buffers: bool = False
    own_pid_only: bool = False
    keep_sigchld: bool = False
    detection: str = _NO_DETECTION

    @classmethod
    def for_config(
        cls, config: OSSandboxConfig, *, notify: bool | None = None, deny_inet: bool = False, **more: bool
    ) -> SeccompPolicy:
        """HOST side: the policy for ``config``.

        ``notify`` defaults to ``config.detect_escape_attempts`` and is kept
        only where :func:`notify_supported`; the container backends pass
        ``notify=False`` (no supervisor there: the profile's EPERM stands).
        """
        want = config.detect_escape_attempts if notify is None else notify
        return cls.make(deny_exec=not config.new_programs_allowed, notify=want, deny_inet=deny_inet, **more)

    @classmethod
    def make(
        cls,
        *,
        deny_exec: bool,
        notify: bool,
        exec_notify: bool = True,
        deny_inet: bool = False,
        deny_unix: bool = False,
        cap_buffers: bool = False,
        own_pid_only: bool = False,
        keep_sigchld: bool = False,
    ) -> SeccompPolicy:
        """HOST side: a policy, with ``notify`` kept only where the kernel supports it."""
        notify = notify and notify_supported()
        return cls(
            deny_exec=deny_exec,
            notify=notify,
            exec_notify=notify and exec_notify,
            deny_inet=deny_inet,
            deny_unix=deny_unix,
            cap_buffers=cap_buffers,
            own_pid_only=own_pid_only,
            keep_sigchld=keep_sigchld,
            detection="supervisor" if notify else _NO_DETECTION,
        )

    def bpf(self) -> list[tuple[int, int, int, int]]:
        """The BPF program as ``(code, jt, jf, k)`` tuples (pure; either side)."""
        return build_filter(self)

    def denied_names(self) -> frozenset[str]:
        """Syscalls denied whatever their arguments (escape class and the rest), on :attr:`arch`."""
        table = SYSCALLS.get(self.arch, {})
        return frozenset(n for n in (*ESCAPE, *DENY, *(HOST_SHARED if self.deny_unix else ())) if n in table)

    def oci_profile(self, runtime: str | None = None) -> dict[str, Any]:
        """The OCI/Docker seccomp profile: allow by default, EPERM for :data:`ESCAPE` + :data:`DENY`.

        Also denies clone(2) with namespace flags and the TIOCSTI/TIOCLINUX
        ioctls, and answers clone3 with ENOSYS so that libc falls back to
        clone, whose flags the filter can inspect (as Docker's default
        profile does). Under gVisor (``runtime="runsc"``) the clone3 rule is
        left out (see :data:`RUNSC`). Without a supervisor in a container,
        escape-class calls get EPERM. Not part of the profile: the execve
        rules (the runtime loads the profile before it execs the container's
        entry point; the container backend enforces STRICT with a read-only
        root and noexec tmpfs) and the personality(2) value check.
        """
        eperm, enosys = errno.EPERM, errno.ENOSYS
        names = [*ESCAPE, *DENY, *COMPAT_ONLY, *(HOST_SHARED if self.deny_unix else ())]
        syscalls: list[dict[str, Any]] = [{"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": eperm}]
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": enosys})
        for flag in CLONE_FLAG_NAMES:
            syscalls.append(
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": eperm,
                    "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
                }
            )
        for request in (TIOCSTI, TIOCLINUX, *(INODE_IOCTLS if self.own_pid_only else ())):
            syscalls.append(
                {
                    "names": ["ioctl"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": eperm,
                    "args": [{"index": 1, "value": request, "op": "SCMP_CMP_EQ"}],
                }
            )
        for family in self.denied_families():
            syscalls.append(
                {
                    "names": ["socket"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": eperm,
                    "args": [{"index": 0, "value": family, "op": "SCMP_CMP_EQ"}],
                }
            )
        syscalls += oci_rules(own_pid_only=self.own_pid_only, keep_sigchld=self.keep_sigchld, errno_ret=eperm)
        syscalls = [r for r in syscalls if runtime != RUNSC or r["errnoRet"] == eperm]  # see RUNSC: the BPF's then
        return {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": _OCI_ARCHES.get(self.arch.lower(), []),
            "syscalls": syscalls,
        }

    def denied_families(self) -> tuple[int, ...]:
        """The socket families socket(2) is denied for (either side, pure)."""
        families = [*(INET_FAMILIES if self.deny_inet else ()), *UNUSED_FAMILIES]
        if self.deny_unix:
            families.append(AF_UNIX)
        return tuple(families)


def plan_step(ctx: PlanContext) -> SeccompPolicy | None:
    """HOST side: the policy for the config; inet sockets denied where the profile has no
    network namespace and the config allows no network. None (reported) without seccomp."""
    ok, why = supported()
    if not ok:
        ctx.report["seccomp"] = f"unavailable: {why}"
        ctx.report["escape_detection"] = "not possible: no seccomp"
        return None
    deny_inet = ctx.profile.network == "deny_only" and ctx.config.network.mode == "none"
    deny_unix = ctx.profile.root == "host" and ctx.profile.network == "deny_only"
    # no cgroup charges socket buffers: the outside monitor counts those of fds, a socket in flight is in none
    no_cgroup = not (ctx.cgroup and ctx.cgroup.enabled)
    cap = no_cgroup and ctx.config.limits.memory_limit_bytes is not None
    policy = SeccompPolicy.for_config(
        ctx.config,
        deny_inet=deny_inet,
        deny_unix=deny_unix,
        cap_buffers=cap,
        own_pid_only="pid" not in ctx.profile.namespaces,  # the host's processes share the pid space
        keep_sigchld=no_cgroup,  # CPU measured from /proc (utime + cutime of live pids)
    )
    if policy.detection != "supervisor":
        ctx.report["escape_detection"] = policy.detection
    return policy


def _ret(k: int) -> tuple[int, int, int, int]:
    return (BPF_RET_K, 0, 0, k)


def _ld(offset: int) -> tuple[int, int, int, int]:
    return (BPF_LD_W_ABS, 0, 0, offset)


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # seccomp_data.args[i], low 32 bits (little endian)


def build_filter(policy: SeccompPolicy) -> list[tuple[int, int, int, int]]:
    """The BPF program for ``policy`` as ``(code, jt, jf, k)`` tuples (pure; either side)."""
    arch = policy.arch
    table = SYSCALLS[arch]
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    notify = SECCOMP_RET_USER_NOTIF if policy.notify else eperm
    prog: list[tuple[int, int, int, int]] = [
        _ld(4),
        (BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH[arch]),
        _ret(SECCOMP_RET_KILL_PROCESS),
        _ld(0),
    ]
    if arch == "x86_64":
        prog += [(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT), _ret(eperm)]
    prog += fcntl_rule(table, eperm) if policy.own_pid_only else []  # first: frequent, and not in the cache

    def simple(name: str, action: int) -> None:
        nr = table.get(name)
        if nr is not None:
            prog.extend([(BPF_JMP_JEQ_K, 0, 1, nr), _ret(action)])

    def arg_map(name: str, arg: int, rules: list[tuple[tuple[int, ...], int]], default: int) -> None:
        """``name`` with ``args[arg]`` in a rule's values -> that rule's action; else ``default``."""
        nr = table.get(name)
        rules = [(values, action) for values, action in rules if values]
        if nr is None or not rules:
            return
        values = [v for vals, _ in rules for v in vals]
        n = len(values)
        body = [_ld(_arg_lo(arg))]
        # value i jumps over the later values and the default to its rule's return
        hits: list[int] = [k for k, (vals, _) in enumerate(rules) for _ in vals]
        body += [(BPF_JMP_JEQ_K, n - i + hits[i], 0, v) for i, v in enumerate(values)]
        body += [_ret(default), *(_ret(action) for _, action in rules)]
        prog.append((BPF_JMP_JEQ_K, 0, len(body), nr))
        prog.extend(body)

    def arg_in(name: str, arg: int, values: tuple[int, ...], hit: int, miss: int) -> None:
        arg_map(name, arg, [(values, hit)], miss)

    for name in ESCAPE:
        simple(name, notify)
    for name in DENY:
        simple(name, eperm)
    if policy.deny_unix:
        for name in HOST_SHARED:
            simple(name, eperm)
        nr = table.get("socketpair")
        if nr is not None:  # socketpair(AF_UNIX, SOCK_DGRAM | flags): the type's low nibble
            prog += [
                (BPF_JMP_JEQ_K, 0, 5, nr),
                _ld(_arg_lo(1)),
                (BPF_ALU_AND_K, 0, 0, 0xF),
                (BPF_JMP_JEQ_K, 0, 1, _SOCK_DGRAM),
                _ret(eperm),
                _ret(SECCOMP_RET_ALLOW),
            ]
    if policy.cap_buffers and (nr := table.get("setsockopt")) is not None:
        n = len(_SOCK_BUFFERS)  # setsockopt(fd, SOL_SOCKET, a buffer size): returns 0, changes nothing
        prog += [(BPF_JMP_JEQ_K, 0, n + 5, nr), _ld(_arg_lo(1)), (BPF_JMP_JEQ_K, 0, n + 1, _SOL_SOCKET)]
        prog += [_ld(_arg_lo(2)), *((BPF_JMP_JEQ_K, n - i, 0, v) for i, v in enumerate(_SOCK_BUFFERS))]
        prog += [_ret(SECCOMP_RET_ALLOW), _ret(SECCOMP_RET_ERRNO)]  # errno 0: a success that did nothing
    arg_in("prctl", 0, (PR_SET_CHILD_SUBREAPER,), eperm, SECCOMP_RET_ALLOW)
    own, sigchld, noop = policy.own_pid_only, policy.keep_sigchld, SECCOMP_RET_ERRNO
    prog += bpf_rules(table, own_pid_only=own, keep_sigchld=sigchld, other_pid=notify, sigchld=eperm, path_attr=noop)
    clone = table["clone"]
    prog += [
        (BPF_JMP_JEQ_K, 0, 4, clone),
        _ld(_arg_lo(0)),
        (BPF_JMP_JSET_K, 0, 1, CLONE_DENIED_MASK),
        _ret(notify),
        _ret(SECCOMP_RET_ALLOW),
    ]
    simple("clone3", SECCOMP_RET_ERRNO | errno.ENOSYS)
    ioctls = [((TIOCSTI, TIOCLINUX), notify), (INODE_IOCTLS if own else (), eperm), (ALLOC_IOCTLS, FALLOC_DENIED)]
    arg_map("ioctl", 1, ioctls, SECCOMP_RET_ALLOW)  # INODE_IOCTLS: BASIC's owner-only changes through a read-only fd
    arg_in("personality", 0, PERSONALITY_ALLOWED, SECCOMP_RET_ALLOW, eperm)
    # inet sockets are recorded by the supervisor; Unix (BASIC) and vsock are denied silently
    silent = tuple(f for f in policy.denied_families() if f not in INET_FAMILIES)
    arg_map("socket", 0, [(INET_FAMILIES if policy.deny_inet else (), notify), (silent, eperm)], SECCOMP_RET_ALLOW)
    if policy.deny_exec:
        exec_action = notify
    elif policy.exec_notify:
        exec_action = SECCOMP_RET_USER_NOTIF
    else:
        exec_action = SECCOMP_RET_ALLOW
    if exec_action != SECCOMP_RET_ALLOW:
        simple("execve", exec_action)
        simple("execveat", exec_action)
    prog.append(_ret(SECCOMP_RET_ALLOW))
    if len(prog) > BPF_MAXINSNS:
        raise ValueError("seccomp program too long")
    return prog


#: The last policy :func:`packed_filter` packed, and its program (the zygote template's, inherited).
_packed: tuple[SeccompPolicy, bytes] | None = None


def packed_filter(policy: SeccompPolicy) -> bytes:
    """The program of ``policy`` as the kernel reads it (``struct sock_filter``, 8 bytes each).

    Either side. The zygote template packs its first plan's program once (its warm-up), so a
    child whose policy equals that one loads those bytes instead of building them again
    (hundreds of objects, on pages every idle worker would otherwise keep a copy of).
    """
    global _packed
    if _packed is not None and _packed[0] == policy:
        return _packed[1]
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in build_filter(policy))
    _packed = (policy, raw)
    return raw


def install_child(section: SeccompPolicy | None, state: ChildState) -> None:
    """CHILD side: load the filter; the listener fd (notifications on) goes to ``state.pass_fds``.

    Needs no_new_privs (or CAP_SYS_ADMIN). The worker must hand the listener
    fd to the host and close it: the sandboxed code must never hold it.
    """
    if not section or not section.enabled:
        return
    policy = section
    check_arch(policy.arch)  # before the program is built for it
    raw = packed_filter(policy)
    fd = load_program(raw, arch=policy.arch, listener=policy.notify)
    state.report["seccomp"] = report(len(raw) // 8, deny_exec=policy.deny_exec, detection=policy.detection)
    if fd is not None:
        state.pass_fds.append(fd)


def pack_notif_resp(notif_id: int, *, error: int = 0, val: int = 0, flags: int = 0) -> bytes:
    """``struct seccomp_notif_resp`` bytes (host side, for the supervisor)."""
    return struct.pack("=QqiI", notif_id, val, error, flags)
