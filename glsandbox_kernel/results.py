"""What a request to the worker produced, host side: cell results, call outcomes, remote errors.

:class:`CellResult` is what ``OSSandbox.run_cell`` returns; :class:`CallOutcome`
is how one session request ended; :func:`exception_from_reply` turns a worker's
error reply (untrusted text) into the exception the caller sees. Who calls:
:mod:`glsandbox_kernel.session` and :mod:`glsandbox_kernel.sandbox`.
"""

from __future__ import annotations

import builtins
import dataclasses
from typing import Any

from .config import OSSandboxConfig
from .exceptions import SandboxMemoryError, SandboxRemoteError
from .metrics import SandboxMetrics


@dataclasses.dataclass
class CellResult:
    """What one cell did: status, Jupyter outputs, error, count, metrics, violations."""

    status: str
    outputs: list[dict[str, Any]]
    execution_count: int | None = None
    error_name: str | None = None
    error_value: str | None = None
    traceback: list[str] | None = None
    payload: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    user_expressions: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: SandboxMetrics | None = None
    violations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    state_lost: bool = False
    audit_record: dict[str, Any] | None = None
    #: enforcing mode after a violation: "stopped" (the cell ended when told to) or "killed"
    enforcement: str | None = None


@dataclasses.dataclass
class CallOutcome:
    """Internal: how one request ended (reply or failure) plus its measurements."""

    reply: dict[str, Any] | None
    error: BaseException | None
    metrics: SandboxMetrics
    violations: list[dict[str, Any]]
    state_lost: bool
    call_id: int | None = None
    #: enforcing mode, after a violation of this call: "stopped" (it ended when told to)
    #: or "killed" (it kept running past the grace period); None when it was not stopped
    enforced: str | None = None


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def exception_from_reply(reply: dict[str, Any], config: OSSandboxConfig, peak: int | None) -> BaseException:
    """The exception to raise for an error reply from user code (host side)."""
    ename = str(reply.get("ename", "Exception"))
    evalue = str(reply.get("evalue", ""))
    tb = reply.get("traceback")
    tb_lines = [str(x) for x in tb] if isinstance(tb, list) else []
    if reply.get("memory_error") and ename == "MemoryError":
        limit = config.limits.memory_limit_bytes
        exc: BaseException = SandboxMemoryError(
            f"the sandboxed code exceeded the memory limit of {_fmt_bytes(limit)} "
            f"(peak measured outside {_fmt_bytes(peak)})",
            limit=limit,
            peak=peak,
        )
    else:
        cls = getattr(builtins, ename, None)
        exc = SandboxRemoteError(ename, evalue, tb_lines)
        if isinstance(cls, type) and issubclass(cls, BaseException) and reply.get("builtin"):
            try:
                exc = cls(evalue)
            except Exception:  # noqa: BLE001 - some builtins need more arguments
                exc = SandboxRemoteError(ename, evalue, tb_lines)
    try:
        exc.sandbox_traceback = tb_lines  # type: ignore[attr-defined]
        if tb_lines:
            exc.add_note("Traceback inside the sandbox:\n" + "".join(tb_lines).rstrip())
    except (AttributeError, TypeError):
        pass
    return exc
