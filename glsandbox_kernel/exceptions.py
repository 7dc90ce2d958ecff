"""All errors glsandbox raises, in one place (host side).

Hierarchy::

    SandboxError
    ├── SandboxConfigError (also ValueError)      bad configuration, named field
    │   └── CellOptionsError                      a kernel cell's ``%%sandbox`` line it cannot use
    ├── BackendUnavailableError                   backend cannot run here (why + fix)
    ├── ConfinementError                          a confinement step failed (step, call, errno, hint)
    ├── SandboxTimeoutError (also TimeoutError)   wall-clock limit hit, worker killed
    ├── SandboxMemoryError (also MemoryError)     memory limit hit (limit + peak)
    │   └── FrameTooLarge                          a request/reply did not fit; worker and state kept
    ├── SandboxViolationError                     a forbidden operation was tried
    │   └── SandboxEscapeError                    ... and it was escape-class
    ├── SandboxSecurityError                      hostile data from the worker refused
    ├── UnsupportedType (also TypeError)          a value outside the codec's allowlist (encoding)
    ├── WorkerGone (also EOFError)                the other end of the frame channel closed
    ├── SandboxCrashedError                       the worker died (signal / exit code / limit)
    ├── SandboxRemoteError                        user code raised a non-builtin exception
    └── SandboxCellError                          ``%%sandbox``: the sandboxed cell failed (one
                                                  subclass per remote name, also the builtin)

    SandboxStopped (BaseException)                raised INSIDE the sandbox when the host stops a
                                                  call after a violation (enforcing mode)

Exceptions raised by user code that are builtins (``ValueError``,
``ZeroDivisionError`` ...) reach the caller as that builtin type, with the
sandbox traceback in ``sandbox_traceback`` and as a note.
"""

from __future__ import annotations

import os
from typing import Any


class SandboxError(Exception):
    """Base class of every error raised by glsandbox."""


def _with_hint(text: str, hint: str) -> str:
    """``text (Hint: hint)``, bubblewrap's way of saying what the user can do; ``text`` without one."""
    return f"{text} (Hint: {hint})" if hint else text


class SandboxConfigError(SandboxError, ValueError):
    """A configuration value is out of range; names the field and what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class CellOptionsError(SandboxConfigError):
    """A ``%%sandbox`` first line the glsandbox kernel cannot use; the message includes the help."""

    def __init__(self, message: str) -> None:
        SandboxError.__init__(self, message)
        self.field = "%%sandbox"


class BackendUnavailableError(SandboxError):
    """The requested isolation backend cannot run on this machine."""

    def __init__(self, backend: str, reason: str, hint: str = "") -> None:
        super().__init__(_with_hint(f"isolation backend {backend!r} is unavailable: {reason}", hint))
        self.backend = backend
        self.reason = reason
        self.hint = hint


class ConfinementError(SandboxError):
    """A confinement step failed in the child (or its host-side setup failed).

    Carries the ``step`` name, the failing call, ``errno`` and a hint, in the
    style of bubblewrap's messages: ``mounts: mount(/usr, MS_BIND): EPERM``.
    """

    def __init__(self, step: str, call: str, errno: int | None = None, hint: str = "") -> None:
        text = f"{step}: {call}"
        if errno is not None:
            text += f": {os.strerror(errno)} (errno {errno})"
        super().__init__(_with_hint(text, hint))
        self.step = step
        self.call = call
        self.errno = errno
        self.hint = hint


class SandboxTimeoutError(SandboxError, TimeoutError):
    """The call ran past ``execution_timeout``; the whole worker tree was killed."""

    def __init__(self, message: str, *, timeout: float | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout


class SandboxMemoryError(SandboxError, MemoryError):
    """The call exceeded ``memory_limit_bytes`` (raised inside or killed from outside)."""

    def __init__(self, message: str, *, limit: int | None = None, peak: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.peak = peak


class FrameTooLarge(SandboxMemoryError):
    """A request or reply did not fit in the memory it may use; nothing was lost (both sides).

    Refused before sending, or skipped by the receiver so the channel stays
    in step: the worker and its state are kept.
    """


class SandboxViolationError(SandboxError):
    """Sandboxed code tried a forbidden operation (enforcing mode)."""

    def __init__(self, message: str, *, violations: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])


class SandboxEscapeError(SandboxViolationError):
    """Sandboxed code tried an escape-class operation (ptrace, mount, unshare ...)."""


class SandboxSecurityError(SandboxError):
    """Data from the worker was refused: oversize/malformed frame or a disallowed type."""


class ForgedFrame(SandboxSecurityError):
    """A frame from the worker has a field of a type the worker never sends (forged by sandboxed code).

    Raised by the host's :class:`~glsandbox_kernel.protocol.FrameChannel` on arrival; the session
    records it as a protocol violation of the running call and kills the worker.
    """


class UnsupportedType(SandboxError, TypeError):
    """Raised by :func:`glsandbox_kernel.codec.encode` for a value outside the allowlist."""

    def __init__(self, typename: str) -> None:
        super().__init__(f"type {typename} cannot leave the sandbox (not in the result allowlist)")
        self.typename = typename


class WorkerGone(SandboxError, EOFError):
    """The other end of the frame channel closed (the worker died or exited; both sides)."""


class SandboxCrashedError(SandboxError):
    """The worker process died; says how (signal, exit code, limit)."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        signal: int | None = None,
        reason: str | None = None,
        limit: float | None = None,
        measured: float | None = None,
    ) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.signal = signal
        self.reason = reason
        #: for a limit the host enforced from outside (``reason``): the limit and the figure it measured
        self.limit = limit
        self.measured = measured


class SandboxStopped(BaseException):
    """Raised in the sandboxed code by the worker's handler of :data:`~glsandbox_kernel.protocol.STOP_SIGNAL`.

    The host sends the signal the moment a trusted violation of the running
    call is detected (enforcing mode). A BaseException, so ``except
    Exception`` in user code does not swallow it; code that keeps running
    anyway is killed after the grace period.
    """


class SandboxRemoteError(SandboxError):
    """User code raised an exception whose type is not a builtin.

    ``ename``/``evalue`` are what the worker reported; ``sandbox_traceback``
    holds the formatted traceback lines (untrusted text).
    """

    def __init__(self, ename: str, evalue: str, traceback: list[str]) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename = ename
        self.evalue = evalue
        self.sandbox_traceback = traceback


class SandboxCellError(SandboxError):
    """Raised by ``%%sandbox`` when the sandboxed cell failed.

    The magic creates a class per remote exception name (``ZeroDivisionError``...)
    that also derives from the matching builtin where it can, so
    ``except ZeroDivisionError`` around ``run_cell_magic`` works. The
    traceback shown is the sandbox's (``sandbox_traceback``, untrusted text).
    """

    ename: str = "SandboxCellError"
    evalue: str = ""
    sandbox_traceback: list[str]

    def __str__(self) -> str:
        return self.evalue
