"""Shared low-level helpers of the confinement steps: libc via ctypes, errors.

Who calls: the step modules of :mod:`glsandbox_kernel.confinement`, on both
sides of the trust boundary. Nothing here allocates much or starts threads,
so the child-side helpers are safe to call after ``fork()``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from ..exceptions import ConfinementError

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once with ``use_errno=True`` (both sides)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
        _libc.prctl.restype = ctypes.c_int
        _libc.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.unshare.argtypes = [ctypes.c_int]
        _libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return _libc


def check(step: str, call: str, result: int, hint: str = "") -> int:
    """Raise :class:`ConfinementError` with the current errno when ``result < 0``."""
    if result < 0:
        raise ConfinementError(step, call, ctypes.get_errno(), hint)
    return result


# prctl options (linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_CHILD_SUBREAPER = 36


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """``prctl(2)``; returns the raw result (errno left in ctypes)."""
    c = ctypes.c_ulong
    return int(libc().prctl(option, c(arg2), c(arg3), c(arg4), c(arg5)))


# Syscall numbers the steps call directly, per machine (x86_64 and the
# asm-generic table used by aarch64).
_SYSCALLS = {
    "x86_64": {
        "pivot_root": 155,
        "seccomp": 317,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
        "capset": 126,
        "capget": 125,
    },
    "aarch64": {
        "pivot_root": 41,
        "seccomp": 277,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
        "capset": 91,
        "capget": 90,
    },
}

MACHINE = platform.machine()


def sysno(name: str) -> int | None:
    """The syscall number of ``name`` on this machine, or None when unknown."""
    table = _SYSCALLS.get(MACHINE)
    return None if table is None else table.get(name)


def close_fds_except(keep: set[int]) -> None:
    """Close every fd >= 3 that is not in ``keep`` (child side, after fork)."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
