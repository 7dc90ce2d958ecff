"""All errors glsandbox raises, in one place (host side).

Hierarchy::

    SandboxError
    ├── SandboxConfigError (also ValueError)      bad configuration, named field
    ├── BackendUnavailableError                   backend cannot run here (why + fix)
    ├── SandboxTimeoutError (also TimeoutError)   wall-clock limit hit, worker killed
    ├── SandboxMemoryError (also MemoryError)     memory limit hit (limit + peak)
    ├── SandboxViolationError                     a forbidden operation was tried
    │   └── SandboxEscapeError                    ... and it was escape-class
    ├── SandboxSecurityError                      hostile data from the worker refused
    ├── SandboxCrashedError                       the worker died (signal / exit code / limit)
    └── SandboxRemoteError                        user code raised a non-builtin exception

    SandboxStopped (BaseException)                raised INSIDE the sandbox when the host stops a
                                                  call after a violation (enforcing mode)

Exceptions raised by user code that are builtins (``ValueError``,
``ZeroDivisionError`` ...) reach the caller as that builtin type, with the
sandbox traceback in ``sandbox_traceback`` and as a note.
"""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """Base class of every error raised by glsandbox."""


class SandboxConfigError(SandboxError, ValueError):
    """A configuration value is out of range; names the field and what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class BackendUnavailableError(SandboxError):
    """The requested isolation backend cannot run on this machine."""

    def __init__(self, backend: str, reason: str, hint: str = "") -> None:
        text = f"isolation backend {backend!r} is unavailable: {reason}"
        if hint:
            text += f" (Hint: {hint})"
        super().__init__(text)
        self.backend = backend
        self.reason = reason
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


class SandboxViolationError(SandboxError):
    """Sandboxed code tried a forbidden operation (enforcing mode)."""

    def __init__(self, message: str, *, violations: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])


class SandboxEscapeError(SandboxViolationError):
    """Sandboxed code tried an escape-class operation (ptrace, mount, unshare ...)."""


class SandboxSecurityError(SandboxError):
    """Data from the worker was refused: oversize/malformed frame or a disallowed type."""


class SandboxCrashedError(SandboxError):
    """The worker process died; says how (signal, exit code, limit)."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        signal: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.signal = signal
        self.reason = reason


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
