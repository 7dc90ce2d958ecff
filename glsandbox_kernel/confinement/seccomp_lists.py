"""The seccomp policy's syscall lists (pure data, either side): one escape list, one deny list.

:mod:`.seccomp` builds both the BPF program and the OCI profile from these,
so the two cannot drift; the supervisor treats :data:`ESCAPE` calls and
:data:`ESCAPE_TOOLS` programs as escape attempts.
"""

from __future__ import annotations

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
#: The rest of Docker's default denials (and of what the container backend
#: always denied): plain EPERM, not recorded.
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
    "adjtimex",
    # AIO contexts: their events count against fs.aio-max-nr, one quota for the whole machine (no
    # namespace, cgroup or rlimit bounds it); a sandbox holding them all stops the host's io_setup
    "io_setup",
    # inotify instances count per user, and a user namespace gives no quota of its own (the
    # owner's count in every parent namespace is charged too): a sandbox holding them all would
    # fail its owner's inotify_init on the host (EMFILE); no sandboxed cell needs to watch files
    "inotify_init",
    "inotify_init1",
)
#: Names the OCI profile also denies for the 32-bit compat architectures it
#: admits (SCMP_ARCH_X86/ARM); they do not exist on x86_64/aarch64, whose BPF
#: program kills any other architecture outright.
COMPAT_ONLY = ("umount", "stime")
#: Basenames whose execve is an escape attempt.
ESCAPE_TOOLS = frozenset({"ptrace", "gdb", "strace", "nsenter", "unshare", "mount", "chroot", "insmod", "modprobe"})

#: What a sandbox sharing the host's IPC namespace and filesystem (BASIC) must not use: System V
#: IPC and POSIX message queues (objects that outlive the sandbox and reach the host's own),
#: and memfd_create (memory no outside measure of the worker tree sees).
HOST_IPC = (
    "shmget", "shmat", "shmctl", "semget", "semop", "semctl", "semtimedop",
    "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend",
    "mq_timedreceive", "mq_notify", "mq_getsetattr", "memfd_create",
)  # fmt: skip
#: inotify watches, for the same sandbox (every backend denies creating an instance: DENY): a watch
#: needs only the uid's read permission of the folder, which Landlock does not check (it governs
#: opening), so BASIC's worker (the host's uid) would read the entry names and activity of folders
#: it is not shown (a masked ``.ssh``, the home outside the project). fanotify_init is in DENY.
HOST_WATCH = ("inotify_add_watch",)
#: Everything BASIC's filter denies besides :data:`DENY` (``SeccompPolicy.deny_unix``).
HOST_SHARED = HOST_IPC + HOST_WATCH
