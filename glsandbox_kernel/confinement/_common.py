"""Shared low-level helpers of the confinement steps: errors, fd hygiene.

Constants, ``libc()`` and ``prctl()`` live in :mod:`glsandbox_kernel.linux`.

Who calls: the step modules of :mod:`glsandbox_kernel.confinement`, on both
sides of the trust boundary. Nothing here allocates much or starts threads,
so the child-side helpers are safe to call after ``fork()``.
"""

from __future__ import annotations

import ctypes
import os

from ..exceptions import SandboxError


class ConfinementError(SandboxError):
    """A confinement step failed in the child (or its host-side setup failed).

    Carries the ``step`` name, the failing call, ``errno`` and a hint, in the
    style of bubblewrap's messages: ``mounts: mount(/usr, MS_BIND): EPERM``.
    """

    def __init__(self, step: str, call: str, errno: int | None = None, hint: str = "") -> None:
        text = f"{step}: {call}"
        if errno is not None:
            text += f": {os.strerror(errno)} (errno {errno})"
        if hint:
            text += f" (Hint: {hint})"
        super().__init__(text)
        self.step = step
        self.call = call
        self.errno = errno
        self.hint = hint


def check(step: str, call: str, result: int, hint: str = "") -> int:
    """Raise :class:`ConfinementError` with the current errno when ``result < 0``."""
    if result < 0:
        raise ConfinementError(step, call, ctypes.get_errno(), hint)
    return result


def close_fds_except(keep: set[int]) -> None:
    """Close every fd >= 3 that is not in ``keep`` (child side, after fork)."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
