"""Loading a packed seccomp program into this process (CHILD side, both sandboxes).

The one place that calls ``seccomp(SECCOMP_SET_MODE_FILTER)``:
:func:`glsandbox_kernel.confinement.seccomp.install_child` (NAMESPACE, the
VM guest) loads its :class:`~.seccomp.SeccompPolicy`'s program through it,
and the container's bootstrap loads the program the host packed from the
same policy (:func:`~.seccomp.packed_filter`) without building it again.

Light on purpose: ctypes and :mod:`glsandbox_kernel.linux` only. The
container's bootstrap imports it before its first result, and the policy's
module (a dataclass, its schema check, the program builder) would cost a
fresh container dataclasses, inspect, ast and dis at every start.
"""

from __future__ import annotations

import ctypes

from ..exceptions import ConfinementError
from ..linux import MACHINE, PR_GET_NO_NEW_PRIVS, libc, prctl, sysno

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
#: One instruction, as the kernel reads it (``struct sock_filter``).
INSTRUCTION_SIZE = 8
BPF_MAXINSNS = 4096  # the kernel's limit of one classic BPF program (linux/bpf_common.h)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def check_arch(arch: str) -> None:
    """Refuse a program for another machine (an image run under emulation): its arch check would
    kill the process at its first syscall."""
    if arch != MACHINE:
        raise ConfinementError("seccomp", f"filter for {arch} on {MACHINE}")


def load_program(raw: bytes, *, arch: str, listener: bool) -> int | None:
    """Load ``raw`` (packed ``struct sock_filter``s for ``arch``); the listener fd when ``listener``, else None.

    Needs no_new_privs (or CAP_SYS_ADMIN); a program for another machine is refused (:func:`check_arch`).
    """
    check_arch(arch)
    if not raw or len(raw) % INSTRUCTION_SIZE:
        raise ConfinementError("seccomp", f"a program of {len(raw)} bytes is no whole number of instructions")
    count = len(raw) // INSTRUCTION_SIZE
    if count > BPF_MAXINSNS:  # the length field is 16 bits: a longer program would load truncated
        raise ConfinementError("seccomp", f"a program of {count} instructions is over the kernel's {BPF_MAXINSNS}")
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(count, ctypes.cast(buf, ctypes.POINTER(_SockFilter)))
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER if listener else 0
    res = int(libc().syscall(sysno("seccomp"), SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog)))
    if res < 0:
        err = ctypes.get_errno()  # before the prctl below
        hint = "set no_new_privs first" if prctl(PR_GET_NO_NEW_PRIVS) != 1 else ""
        raise ConfinementError(
            "seccomp",
            "seccomp(SECCOMP_SET_MODE_FILTER)",
            err,
            hint or "this requires a kernel configured with CONFIG_SECCOMP_FILTER",
        )
    return res if listener else None


def report(instructions: int, *, deny_exec: bool, detection: str) -> dict[str, object]:
    """What the worker's hello says was loaded (``report["seccomp"]``; untrusted once it reaches the host)."""
    return {"instructions": instructions, "deny_exec": deny_exec, "detection": detection}
