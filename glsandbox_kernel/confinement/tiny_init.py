"""The init of a zygote-cloned sandbox as a 466-byte program instead of a Python process.

A sandbox the zygote template clones into its namespaces is two processes:
the init (pid 1 of the new pid namespace) and the worker it forks (pid 2).
Kept as a Python fork, the init holds every page of the template that the
template or the worker rewrite after the fork (1.3-2.0 MiB of each idle session).
Here the init forks the worker and then replaces itself (``execve``) with a
tiny static program (:data:`CODE`, x86-64 only) from a sealed memfd the
template made once: its whole memory is a page of stack and its share of
the program's page, so an idle session is one Python process.

The program does what :func:`.mirror.wait_and_mirror_child` does for an init:

1. ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` again, ``prctl(PR_SET_NAME, "glsandbox-init")``;
2. blocks SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM and SIGCHLD and
   reads them from a ``signalfd``;
3. reaps every child (``wait4(-1, WNOHANG)``) after each SIGCHLD, first
   once at start; when pid 2 (the worker) has ended it writes the raw wait
   status to fd 3 (the template's status pipe) and exits with the worker's
   code, or 128 + its signal (pid 1 cannot die of a signal it sends itself);
4. sends every other signal it reads to pid 2;
5. exits 255 if a system call it cannot do without fails.

Its source, for ``as --64`` (``objcopy -O binary -j .text`` gives :data:`CODE`),
is ``tiny_init_x86_64.S`` beside this module. Its credentials: the init keeps
only ``CAP_KILL`` across the exec (ambient), enough to signal the worker
once the worker has switched to the sandbox uid, and no more than the worker
holds besides it, so the worker can neither ptrace nor kill it (SIGKILL and
SIGSTOP from inside a pid namespace never reach its init).
"""

from __future__ import annotations

import ctypes
import os
import struct

from ..linux import MACHINE, PR_CAP_AMBIENT, libc, prctl, sysno
from .capabilities import _LINUX_CAPABILITY_VERSION_3, _CapData, _CapHeader

#: Assembled from tiny_init_x86_64.S (``as --64``, then ``objcopy -O binary -j .text``).
CODE = bytes.fromhex(
    "bf01000000be09000000b89d0000000f0548b8676c73616e64626f48ba782d696e69"
    "7400005250bf0f0000004889e6b89d0000000f0568074a01004889e331ff4889de31"
    "d241ba08000000b80e0000000f05bfffffffff4889deba080000004531d2b8210100"
    "000f054885c00f88a40000004989c44881ec88000000bfffffffff488db424800000"
    "00ba010000004531d2b83d0000000f054883f802743c4885c07fd978714c89e74889"
    "e6ba8000000031c00f05483d8000000075168b342483fe1174b8bf02000000b83e00"
    "00000f05ebd34883f8fc74cdeb3cbf03000000488db42480000000ba04000000b801"
    "0000000f058b84248000000089c783e77f740881c780000000eb06c1e8080fb6f8b8"
    "e70000000f05bfff000000b8e70000000f05"
)
#: The fd the program writes the worker's wait status to.
STATUS_FD = 3
#: The worker's pid inside the new pid namespace (the init forks it first).
WORKER_PID = 2
CAP_KILL = 5
PR_CAP_AMBIENT_RAISE = 2
_MFD_CLOEXEC, _MFD_ALLOW_SEALING, _MFD_EXEC = 0x1, 0x2, 0x10
_F_ADD_SEALS = 1033
_SEALS = 0x1 | 0x2 | 0x4 | 0x8  # F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE

#: TEMPLATE side: the sealed memfd holding the program, made once by :func:`prepare`; -1: none.
exe_fd = -1


def elf(code: bytes) -> bytes:
    """The static position-independent ELF executable whose only segment is ``code``.

    Header, two program headers (the read+execute text, a non-executable
    stack), then the code; loaded as ``ET_DYN`` without an interpreter, so at
    a random address.
    """
    start = 64 + 2 * 56
    header = struct.pack(
        "<4sBBBBB7xHHIQQQIHHHHHH",
        b"\x7fELF", 2, 1, 1, 0, 0,  # 64-bit, little-endian, version 1, System V ABI
        3, 62, 1,  # ET_DYN, EM_X86_64, EV_CURRENT
        start, 64, 0, 0,  # entry, program headers at 64, no section headers, flags
        64, 56, 2, 64, 0, 0,
    )  # fmt: skip
    size = start + len(code)
    text = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, size, size, 0x1000)  # PT_LOAD, R+X
    stack = struct.pack("<IIQQQQQQ", 0x6474E551, 6, 0, 0, 0, 0, 0, 16)  # PT_GNU_STACK, R+W
    return header + text + stack + code


def prepare() -> None:
    """TEMPLATE side, before any fork: write the program into a sealed memfd (once).

    Leaves :data:`exe_fd` at -1 where the program cannot run (not x86-64, no
    memfd, exec of memfds refused): the init then stays the Python process.
    """
    global exe_fd
    if exe_fd >= 0 or MACHINE != "x86_64" or not hasattr(os, "memfd_create"):
        return
    try:
        try:
            fd = os.memfd_create("glsandbox-init", _MFD_CLOEXEC | _MFD_ALLOW_SEALING | _MFD_EXEC)
        except OSError:  # a kernel before 6.3 knows no MFD_EXEC
            fd = os.memfd_create("glsandbox-init", _MFD_CLOEXEC | _MFD_ALLOW_SEALING)
    except OSError:
        return
    try:
        data = elf(CODE)
        if os.write(fd, data) != len(data):
            raise OSError("short write")
        os.fchmod(fd, 0o555)
        import fcntl

        fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
    except OSError:
        os.close(fd)
        return
    exe_fd = fd


def _keep_cap_kill_child() -> bool:
    """CHILD side (the init): make CAP_KILL inheritable and ambient, so it survives the exec."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    get, put = sysno("capget"), sysno("capset")
    if get is None or put is None:
        return False
    lib = libc()
    if lib.syscall(get, ctypes.byref(header), data) != 0 or not data[0].permitted & (1 << CAP_KILL):
        return False
    data[0].inheritable |= 1 << CAP_KILL
    if lib.syscall(put, ctypes.byref(header), data) != 0:
        return False
    return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL) == 0


def close_child() -> None:
    """CHILD side, any process forked from the template but the init: close the program's fd."""
    global exe_fd
    if exe_fd >= 0:
        os.close(exe_fd)
        exe_fd = -1


def exec_child(status_w: int) -> None:
    """CHILD side, the cloned init once the worker (pid 2) is forked: become the program.

    Every fd but 0-2, the status pipe (as fd 3) and the program's memfd is
    closed first. Returns only where the program cannot be run (then the
    caller goes on as the Python init); otherwise never returns.
    """
    from ._common import close_fds_except

    fd = exe_fd
    if fd < 0:
        return
    close_fds_except({status_w, fd})
    if fd == STATUS_FD:
        fd = os.dup(fd)  # the lowest free fd: not 3, held by it
    if status_w != STATUS_FD:
        os.dup2(status_w, STATUS_FD)
        os.close(status_w)
    try:
        if _keep_cap_kill_child():
            os.execve(fd, ["glsandbox-init"], {})
    except OSError:
        pass
    if status_w != STATUS_FD:  # go on as the Python init, with the status pipe where it was
        os.dup2(STATUS_FD, status_w)
        os.close(STATUS_FD)
