"""Linux constants and the two libc calls every layer needs, in one place.

Syscall numbers per machine, clone(2) namespace flags, prctl(2) options
and one :func:`prctl` wrapper, terminal ioctls, socket families. Pure data
plus :func:`libc`; nothing here allocates much or starts threads, so it is
safe on both sides of the trust boundary and in a child after ``fork()``.

Who uses it: the confinement steps, the seccomp supervisor, the zygote, and
the container backend's seccomp profile (through
:class:`glsandbox_kernel.confinement.seccomp.SeccompPolicy`).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

#: This machine, as ``platform.machine()`` names it (``uname``: importing platform costs a fresh
#: container's worker some milliseconds before its first reply) ("x86_64", "aarch64").
MACHINE = os.uname().machine

# -- clone(2) / unshare(2) namespace flags (linux/sched.h) ----------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
#: Not a namespace: the child becomes the caller's sibling, outside the
#: sandbox's process tree (and BASIC's outside monitor); denied like them.
CLONE_PARENT = 0x00008000
#: Namespace kind (as the plans name it) -> clone flag.
CLONE_NS_FLAGS: dict[str, int] = {
    "user": CLONE_NEWUSER,
    "mount": CLONE_NEWNS,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "cgroup": CLONE_NEWCGROUP,
}
#: Flag -> its C name (for violation records), in bit order.
CLONE_FLAG_NAMES: dict[int, str] = {
    CLONE_NEWNS: "CLONE_NEWNS",
    CLONE_NEWCGROUP: "CLONE_NEWCGROUP",
    CLONE_NEWUTS: "CLONE_NEWUTS",
    CLONE_NEWIPC: "CLONE_NEWIPC",
    CLONE_NEWUSER: "CLONE_NEWUSER",
    CLONE_NEWPID: "CLONE_NEWPID",
    CLONE_NEWNET: "CLONE_NEWNET",
    CLONE_PARENT: "CLONE_PARENT",
}
#: Every flag clone(2) is denied with: the namespace flags and CLONE_PARENT (0x7E028000).
CLONE_DENIED_MASK = 0
for _flag in CLONE_FLAG_NAMES:
    CLONE_DENIED_MASK |= _flag
del _flag

# -- prctl(2) options (linux/prctl.h) -------------------------------------------
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# -- ioctls -----------------------------------------------------------------------
TIOCSTI = 0x5412  # push a byte into a terminal's input queue
TIOCLINUX = 0x541C  # virtual console tricks (selection paste)
IOCTL_NAMES: dict[int, str] = {TIOCSTI: "TIOCSTI", TIOCLINUX: "TIOCLINUX"}
#: The inode ioctls the kernel allows on a descriptor opened read-only, checking only ownership
#: (linux/fs.h, linux/fsverity.h, linux/fscrypt.h; _IOW/_IOR as on x86_64 and aarch64): the inode
#: flags (``chattr``: FS_IOC_SETFLAGS and its 32-bit FS_IOC32_SETFLAGS), the extended attributes
#: (FS_IOC_FSSETXATTR, xfs_io's ``chattr``), the generation number (FS_IOC_SETVERSION and its 32-bit
#: form), fs-verity (FS_IOC_ENABLE_VERITY: the file can never be written again) and an empty
#: folder's encryption policy (FS_IOC_SET_ENCRYPTION_POLICY).
FS_IOC_SETFLAGS = 0x40086602
FS_IOC32_SETFLAGS = 0x40046602
FS_IOC_FSSETXATTR = 0x401C5820
FS_IOC_SETVERSION = 0x40087602
FS_IOC32_SETVERSION = 0x40047602
FS_IOC_ENABLE_VERITY = 0x40806685
FS_IOC_SET_ENCRYPTION_POLICY = 0x800C6613
INODE_IOCTLS: tuple[int, ...] = (
    FS_IOC_SETFLAGS, FS_IOC32_SETFLAGS, FS_IOC_FSSETXATTR, FS_IOC_SETVERSION, FS_IOC32_SETVERSION,
    FS_IOC_ENABLE_VERITY, FS_IOC_SET_ENCRYPTION_POLICY,
)  # fmt: skip

# -- fcntl(2) commands (linux/fcntl.h) ----------------------------------------------
F_SETLEASE = 1024  # F_LINUX_SPECIFIC_BASE + 0

# -- socket families --------------------------------------------------------------
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
AF_PACKET = 17
AF_VSOCK = 40
#: The families that reach a network (denied by BASIC without network).
INET_FAMILIES: tuple[int, ...] = (AF_INET, AF_INET6, AF_PACKET)
#: Families no sandbox has a use for (host/VM sockets): denied everywhere.
UNUSED_FAMILIES: tuple[int, ...] = (AF_VSOCK,)
FAMILY_NAMES: dict[int, str] = {
    AF_UNIX: "AF_UNIX",
    AF_INET: "AF_INET",
    AF_INET6: "AF_INET6",
    AF_PACKET: "AF_PACKET",
    AF_VSOCK: "AF_VSOCK",
}

# -- syscall numbers --------------------------------------------------------------
# x86_64 (arch/x86/entry/syscalls/syscall_64.tbl) and the asm-generic table
# aarch64 uses. Only the syscalls this project names: the seccomp filter's
# rules, the calls the confinement steps make directly, and the decoding
# tables of the supervisor. A name missing on a machine does not exist there.
# fmt: off
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65,
        "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
        "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243,
        "mq_notify": 244, "mq_getsetattr": 245, "memfd_create": 319, "socketpair": 53, "setsockopt": 54, "prctl": 157,
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
        "adjtimex": 159, "create_module": 174, "get_kernel_syms": 177, "query_module": 178,
        "nfsservctl": 180, "ioperm": 173, "iopl": 172, "kcmp": 312, "lookup_dcookie": 212,
        "quotactl": 179, "quotactl_fd": 443, "sysfs": 139, "_sysctl": 156, "uselib": 134,
        "ustat": 136, "vhangup": 153, "syslog": 103, "get_mempolicy": 239,
        "set_mempolicy": 238, "mbind": 237, "move_pages": 279, "name_to_handle_at": 303,
        "fanotify_init": 300, "setdomainname": 171, "sethostname": 170, "process_madvise": 440,
        "seccomp": 317, "landlock_create_ruleset": 444, "landlock_add_rule": 445,
        "landlock_restrict_self": 446, "capset": 126, "capget": 125,
        "prlimit64": 302, "setpriority": 141, "sched_setaffinity": 203, "sched_setscheduler": 144,
        "sched_setparam": 142, "sched_setattr": 314, "ioprio_set": 251, "migrate_pages": 256,
        "get_robust_list": 274, "rt_sigaction": 13,
        "chmod": 90, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "lchown": 94, "fchownat": 260,
        "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280, "setxattr": 188,
        "lsetxattr": 189, "removexattr": 197, "lremovexattr": 198, "setxattrat": 463,
        "removexattrat": 466, "file_setattr": 469, "fchmod": 91, "fchown": 93, "fsetxattr": 190,
        "fremovexattr": 199, "fcntl": 72,
        "io_setup": 206, "inotify_init": 253, "inotify_add_watch": 254, "inotify_init1": 294, "fallocate": 285,
        "copy_file_range": 326, "sendfile": 40,
    },
    "aarch64": {
        "shmget": 194, "shmat": 196, "shmctl": 195, "shmdt": 197, "semget": 190, "semop": 193,
        "semctl": 191, "semtimedop": 192, "msgget": 186, "msgsnd": 189, "msgrcv": 188, "msgctl": 187,
        "mq_open": 180, "mq_unlink": 181, "mq_timedsend": 182, "mq_timedreceive": 183,
        "mq_notify": 184, "mq_getsetattr": 185, "memfd_create": 279, "socketpair": 199, "setsockopt": 208, "prctl": 167,
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
        "adjtimex": 171, "nfsservctl": 42, "kcmp": 272, "lookup_dcookie": 18, "quotactl": 60,
        "quotactl_fd": 443, "vhangup": 58, "syslog": 116, "get_mempolicy": 236,
        "set_mempolicy": 237, "mbind": 235, "move_pages": 239, "name_to_handle_at": 264,
        "fanotify_init": 262, "setdomainname": 162, "sethostname": 161, "process_madvise": 440,
        "seccomp": 277, "landlock_create_ruleset": 444, "landlock_add_rule": 445,
        "landlock_restrict_self": 446, "capset": 91, "capget": 90,
        "prlimit64": 261, "setpriority": 140, "sched_setaffinity": 122, "sched_setscheduler": 119,
        "sched_setparam": 118, "sched_setattr": 274, "ioprio_set": 30, "migrate_pages": 238,
        "get_robust_list": 100, "rt_sigaction": 134,
        "fchmodat": 53, "fchmodat2": 452, "fchownat": 54, "utimensat": 88, "setxattr": 5,
        "lsetxattr": 6, "removexattr": 14, "lremovexattr": 15, "setxattrat": 463,
        "removexattrat": 466, "file_setattr": 469, "fchmod": 52, "fchown": 55, "fsetxattr": 7,
        "fremovexattr": 16, "fcntl": 25,
        "io_setup": 0, "inotify_add_watch": 27, "inotify_init1": 26, "fallocate": 47, "copy_file_range": 285, "sendfile": 71,
    },
}
# fmt: on


def sysno(name: str, arch: str = MACHINE) -> int | None:
    """The number of syscall ``name`` on ``arch`` (this machine by default), or None."""
    return SYSCALLS.get(arch, {}).get(name)


def syscall_name(nr: int, arch: str = MACHINE) -> str:
    """The name of syscall ``nr`` on ``arch``; ``syscall_<nr>`` when this table does not know it."""
    for name, num in SYSCALLS.get(arch, {}).items():
        if num == nr:
            return name
    return f"syscall_{nr}"


# -- libc -------------------------------------------------------------------------
_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once with ``use_errno=True`` (both sides)."""
    global _libc
    if _libc is None:
        try:
            # glibc's soname first: ctypes.util imports subprocess and more (~10 ms of
            # a fresh container's start, where this runs before the worker connects).
            lib = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            from ctypes.util import find_library

            lib = ctypes.CDLL(find_library("c") or None, use_errno=True)
        lib.syscall.restype = ctypes.c_long
        lib.prctl.restype = ctypes.c_int
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.unshare.argtypes = [ctypes.c_int]
        lib.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _libc = lib
    return _libc


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """``prctl(2)``; returns the raw result (the errno stays in ``ctypes.get_errno()``)."""
    c = ctypes.c_ulong
    return int(libc().prctl(option, c(arg2), c(arg3), c(arg4), c(arg5)))


_SIGCHLD = 17  # the exit signal clone(2) is given, as fork() does (x86_64 and aarch64)


_fork_calls: tuple[Any, Any, Any, Any] | None = None


def fork_calls() -> tuple[Any, Any, Any, Any]:
    """``syscall`` (through a ``PyDLL``: the GIL stays held) and Python's three fork hooks, made once.

    TEMPLATE side, called before its imports are frozen: each spawn then
    makes no ``PyDLL`` and no class of its own (pages its children would keep).
    """
    global _fork_calls
    if _fork_calls is None:
        call = ctypes.PyDLL("libc.so.6", use_errno=True).syscall
        call.restype = ctypes.c_long
        api = ctypes.pythonapi
        _fork_calls = (call, api.PyOS_BeforeFork, api.PyOS_AfterFork_Parent, api.PyOS_AfterFork_Child)
    return _fork_calls


def clone_fork(flags: int, *, reinit_child: bool = True, hooks: bool = True) -> int:
    """``fork()`` through ``clone(2)`` with extra ``flags`` (namespaces): the child starts in them.

    TEMPLATE side, single-threaded only (the zygote). With ``CLONE_NEWPID``
    the child is pid 1 of its new pid namespace at once, so no set-up
    process is needed in between. Python's own fork hooks run as
    :func:`os.fork` runs them (``PyOS_BeforeFork`` and the ``AfterFork``
    pair, under the GIL: a ``PyDLL`` keeps it held across the call).
    ``hooks=False`` runs none of them, for a process that never started a
    thread and imported no module with a fork hook besides threading's and
    logging's (the zygote template without pre-imports, and its children):
    those only reset thread state and locks such a process does not have,
    and threading's alone writes some 0.5 MiB of the shared pages.
    Returns 0 in the child, the child's pid in the parent; raises
    :class:`OSError` with the errno (``EINVAL`` where this table has no
    ``clone`` number).
    """
    import errno as _errno

    nr = sysno("clone")
    if nr is None:
        raise OSError(_errno.EINVAL, f"clone(2) has no number known here ({MACHINE})")
    call, before, after_parent, after_child = fork_calls()
    if hooks:
        before()
    # clone(flags, newsp=NULL (this stack, copied), parent_tid, child_tid/tls = NULL): fork()'s semantics.
    pid = int(call(ctypes.c_long(nr), ctypes.c_ulong(flags | _SIGCHLD), None, None, None, None))
    err = ctypes.get_errno()
    if pid == 0:
        if hooks:
            (after_child if reinit_child else after_parent)()
        return 0
    if hooks:
        after_parent()
    if pid < 0:
        raise OSError(err, f"clone({flags:#x}): {os.strerror(err)}")
    return pid
