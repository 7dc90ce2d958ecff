"""The seccomp policy's argument rules for other processes and SIGCHLD (pure, either side).

:mod:`.seccomp` emits these into both outputs of one policy: the BPF program
(:func:`bpf_rules`, zygote backends and the container's bootstrap) and the
OCI profile (:func:`oci_rules`, the container runtimes), so the two cannot drift.

``own_pid_only`` (a sandbox without its own pid namespace: BASIC): the
calls that change *another* process by pid (:data:`OWN_PID_ONLY`) are allowed
only for pid 0, the caller itself. The filter cannot know the caller's own
pid, nor tell its children from the host's processes of the same uid (the
kernel or magic host, the Jupyter server, the user's shell), so any other pid,
and the process-group and user forms of setpriority/ioprio_set, are denied
(recorded by the supervisor where it runs). A child is tuned by its own calls,
or inherits the caller's settings at fork.

Also under ``own_pid_only``: the calls that change an existing file's
attributes (:data:`ATTRIBUTE_CALLS`: mode, owner, times, xattrs), by path
*and* by descriptor, do nothing and return 0, silently: honest code meets
them in every ``shutil.copy``'s ``copymode`` (IPython's own profile set-up
copies files with it), which an error or a record (an escape attempt) would
fail. Landlock, which hides and protects the host's files in BASIC, has no
right for them, and the kernel checks only ownership: BASIC's worker keeps the
host's uid (as root, uid 0), so without this rule it could ``chmod 4777`` a
root-owned file it may not even open (review 25b), or one it may only read
through an ``O_RDONLY`` descriptor (``fchmod``, ``futimens``, ``fsetxattr``:
review 26; Landlock bounds the opening, not what the owner does with the
descriptor). The inode ioctls of the same kind (``chattr``'s FS_IOC_SETFLAGS,
FS_IOC_FSSETXATTR, fs-verity, :data:`~glsandbox_kernel.linux.INODE_IOCTLS`;
:mod:`.seccomp` merges them into its ioctl rule) and ``fcntl(F_SETLEASE)``
(a lease on a readable host file holds up every host ``open`` for writing
for ``lease-break-time``) get EPERM: nothing a notebook runs uses them.
``flock`` stays allowed (the README's known limits): refused, ``filelock``
(Hugging Face, torch caches) takes EPERM for a held lock and waits forever, dask's
``locket`` raises (measured: partd's lock, distributed's worker folders left
unlocked), and a no-op would let two processes purge each other's folders.

``keep_sigchld`` (CPU measured only from /proc, no cgroup): a child's CPU time
reaches its parent's ``cutime`` only when the parent waits for it; one reaped
by the kernel because the parent set ``SIGCHLD`` to ``SIG_IGN`` or
``SA_NOCLDWAIT`` is counted nowhere. The filter cannot read the
``struct sigaction``, so every ``rt_sigaction(SIGCHLD, act != NULL)`` gets
EPERM (queries with ``act == NULL`` stay allowed). Silent, not recorded: shells
(bash, dash, make) install a SIGCHLD handler at every start and carry on when
it fails; a record would fail each such call as an escape attempt. The other
ways past a wait are closed already: the worker starts with SIGCHLD at SIG_DFL
(the zygote resets it after fork; SIG_IGN would survive exec) and is the
subreaper of every orphan (clearing that, and ``clone(CLONE_PARENT)``, are
denied); a child cloned with exit signal 0 is never reaped by the kernel (a
zombie until waited, counted while it is one; an orphan's exit signal becomes
SIGCHLD); threads add to their process's own figure.

Always: ``fallocate`` that would allocate blocks (any mode without ``FALLOC_FL_PUNCH_HOLE`` or
``FALLOC_FL_COLLAPSE_RANGE``, which only free) gets EOPNOTSUPP, as on a filesystem without it; glibc's
``posix_fallocate`` then writes the blocks itself. One ``fallocate`` puts its whole length on the host's
disk in a millisecond, past any signal (the disk guard's kill lands after it), and with
``FALLOC_FL_KEEP_SIZE`` past RLIMIT_FSIZE too: measured 512 MiB in one call under a 32 MiB
``disk_quota_bytes``, and 0.6-1.5 GiB of 64 MiB ``posix_fallocate`` files before the kill
(``tests/escape/test_disk_quota_fallocate.py``); writes go page by page, which the kill stops. The same
allocation through the generic ``ioctl`` forms (``FS_IOC_RESVSP``/``RESVSP64``, ``FS_IOC_ZERO_RANGE``, XFS's
``ALLOCSP``) gets EOPNOTSUPP too, and ``copy_file_range`` (ENOSYS) and ``sendfile`` (EINVAL), which write
their whole length in one call (256 MiB of zeros from a sparse source; 1.1 GiB from 8 threads under a 32 MiB
quota): Python's ``shutil`` falls back to read and write on those errors (tested), coreutils and
``socket.sendfile`` do by their sources.
"""

from __future__ import annotations

import errno
from typing import Any

from ..linux import F_SETLEASE

#: SIGCHLD on x86_64 and aarch64 (the architectures this filter supports).
SIGCHLD = 17
PRIO_PROCESS = 0
IOPRIO_WHO_PROCESS = 1

#: Syscall -> the ``(argument, value)`` pairs it is allowed with under ``own_pid_only``
#: (any other value of one of them: denied). The pid is ``pid_t``: its low 32 bits.
OWN_PID_ONLY: dict[str, tuple[tuple[int, int], ...]] = {
    "prlimit64": ((0, 0),),
    "setpriority": ((0, PRIO_PROCESS), (1, 0)),
    "sched_setaffinity": ((0, 0),),
    "sched_setscheduler": ((0, 0),),
    "sched_setparam": ((0, 0),),
    "sched_setattr": ((0, 0),),
    "ioprio_set": ((0, IOPRIO_WHO_PROCESS), (1, 0)),
    "migrate_pages": ((0, 0),),
    "get_robust_list": ((0, 0),),
}

#: A no-op under ``own_pid_only`` (see above): the path, ``*at`` and descriptor forms.
ATTRIBUTE_CALLS = (
    "chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat", "utime", "utimes", "futimesat",
    "utimensat", "setxattr", "lsetxattr", "removexattr", "lremovexattr", "setxattrat", "removexattrat",
    "file_setattr", "fchmod", "fchown", "fsetxattr", "fremovexattr",
)  # fmt: skip
#: ``fcntl`` commands that get EPERM under ``own_pid_only``.
FCNTL_DENIED = (F_SETLEASE,)

#: ``fallocate`` modes that only free blocks (PUNCH_HOLE, COLLAPSE_RANGE): the others get EOPNOTSUPP.
FALLOC_FREEING = 0x02 | 0x08
FALLOC_DENIED = 0x00050000 | errno.EOPNOTSUPP  # SECCOMP_RET_ERRNO | EOPNOTSUPP
#: ``ioctl`` requests that allocate as ``fallocate`` does: FS_IOC_RESVSP, FS_IOC_RESVSP64, FS_IOC_ZERO_RANGE,
#: XFS_IOC_ALLOCSP, XFS_IOC_ALLOCSP64 (``_IOW('X', n, struct space_resv)``); they get EOPNOTSUPP too.
ALLOC_IOCTLS = (0x40305828, 0x4030582A, 0x40305839, 0x4030580A, 0x40305824)
#: Calls that write their whole length in one go, past the disk guard's kill: name -> the errno that makes
#: callers fall back to read and write.
BULK_COPIES = {"copy_file_range": errno.ENOSYS, "sendfile": errno.EINVAL}

Instruction = tuple[int, int, int, int]

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06
_ALLOW = 0x7FFF0000


def _arg(i: int, high: bool = False) -> Instruction:
    """Load ``seccomp_data.args[i]``, its low (or high) 32 bits (little endian)."""
    return (_LD_W_ABS, 0, 0, 16 + 8 * i + (4 if high else 0))


def bpf_rules(
    table: dict[str, int], *, own_pid_only: bool, keep_sigchld: bool, other_pid: int, sigchld: int, path_attr: int
) -> list[Instruction]:
    """The BPF instructions of the rules (``table``: name -> number on the filter's arch).

    ``other_pid``: the action for a call on another process; ``sigchld``: for
    ``rt_sigaction(SIGCHLD, act)``; ``path_attr``: for an attribute call (ERRNO 0, a no-op).
    Each block ends in a return for its syscall.
    """
    prog: list[Instruction] = []
    if own_pid_only:
        for name in ATTRIBUTE_CALLS:
            nr = table.get(name)
            if nr is not None:
                prog += [(_JEQ_K, 0, 1, nr), (_RET_K, 0, 0, path_attr)]
        for name, checks in OWN_PID_ONLY.items():
            nr = table.get(name)
            if nr is None:
                continue
            k = len(checks)
            body: list[Instruction] = []
            for i, (arg, value) in enumerate(checks):  # a value that differs jumps to the denial
                body += [_arg(arg), (_JEQ_K, 0, 2 * k - 2 * i - 1, value)]
            body += [(_RET_K, 0, 0, _ALLOW), (_RET_K, 0, 0, other_pid)]
            prog += [(_JEQ_K, 0, len(body), nr), *body]
    nr = table.get("fallocate")
    if nr is not None:  # fallocate(fd, mode, ...): mode is an int, its low half
        prog += [(_JEQ_K, 0, 4, nr), _arg(1), (_JSET_K, 1, 0, FALLOC_FREEING)]
        prog += [(_RET_K, 0, 0, FALLOC_DENIED), (_RET_K, 0, 0, _ALLOW)]
    for name, err in BULK_COPIES.items():
        if (nr := table.get(name)) is not None:
            prog += [(_JEQ_K, 0, 1, nr), (_RET_K, 0, 0, 0x00050000 | err)]
    nr = table.get("rt_sigaction")
    if keep_sigchld and nr is not None:
        prog += [
            (_JEQ_K, 0, 8, nr),
            _arg(0),
            (_JEQ_K, 0, 5, SIGCHLD),  # another signal: allowed
            _arg(1),
            (_JEQ_K, 0, 2, 0),  # act's low half set: denied
            _arg(1, high=True),
            (_JEQ_K, 1, 0, 0),  # act == NULL (a query): allowed
            (_RET_K, 0, 0, sigchld),
            (_RET_K, 0, 0, _ALLOW),
        ]
    return prog


def fcntl_rule(table: dict[str, int], denied: int) -> list[Instruction]:
    """``fcntl(fd, cmd)`` with a :data:`FCNTL_DENIED` command -> ``denied``, any other -> ALLOW.

    :mod:`.seccomp` puts it first (``own_pid_only``): Python, sqlite and libc call fcntl often, and an
    argument rule keeps it out of the kernel's action cache, so it should not walk the whole program.
    ``cmd`` is an unsigned int: its low half.
    """
    nr = table.get("fcntl")
    if nr is None:
        return []
    n = len(FCNTL_DENIED)
    prog = [(_JEQ_K, 0, n + 3, nr), _arg(1)]
    prog += [(_JEQ_K, n - i, 0, cmd) for i, cmd in enumerate(FCNTL_DENIED)]
    return [*prog, (_RET_K, 0, 0, _ALLOW), (_RET_K, 0, 0, denied)]


def oci_rules(*, own_pid_only: bool, keep_sigchld: bool, errno_ret: int) -> list[dict[str, Any]]:
    """The same rules for an OCI/Docker profile (a rule's conditions must all hold: one rule per
    argument that may differ)."""
    rules: list[dict[str, Any]] = [
        {
            "names": ["fallocate"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EOPNOTSUPP,
            "args": [{"index": 1, "value": FALLOC_FREEING, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        },
        *({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": err} for name, err in BULK_COPIES.items()),
        *(
            {
                "names": ["ioctl"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EOPNOTSUPP,
                "args": [{"index": 1, "value": request, "op": "SCMP_CMP_EQ"}],
            }
            for request in ALLOC_IOCTLS
        ),
    ]
    if own_pid_only:
        rules.append({"names": list(ATTRIBUTE_CALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": 0})
        for value in FCNTL_DENIED:
            rules.append(
                {
                    "names": ["fcntl"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": errno_ret,
                    "args": [{"index": 1, "value": value, "op": "SCMP_CMP_EQ"}],
                }
            )
        for name, checks in OWN_PID_ONLY.items():
            for arg, value in checks:
                rules.append(
                    {
                        "names": [name],
                        "action": "SCMP_ACT_ERRNO",
                        "errnoRet": errno_ret,
                        "args": [{"index": arg, "value": value, "op": "SCMP_CMP_NE"}],
                    }
                )
    if keep_sigchld:
        rules.append(
            {
                "names": ["rt_sigaction"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno_ret,
                "args": [
                    {"index": 0, "value": SIGCHLD, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 0, "op": "SCMP_CMP_NE"},
                ],
            }
        )
    return rules
