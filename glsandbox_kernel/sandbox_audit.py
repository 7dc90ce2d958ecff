"""The audit side of :class:`~glsandbox_kernel.sandbox.OSSandbox` (host side).

One hash-chained record per event: calls and cells (sealed by a committer
thread right after the call returns, durable before the next one returns),
violations as they happen (from the
supervisor's thread), session start and end. No content a cell produces can
stop a record from being written: what cannot be sealed as it is gets
written scrubbed and marked ``audit_fallback``.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from .audit import AuditLog, EventType
from .config import OSSandboxConfig
from .exceptions import (
    SandboxCrashedError,
    SandboxEscapeError,
    SandboxMemoryError,
    SandboxTimeoutError,
    SandboxViolationError,
)
from .metrics import SandboxMetrics
from .results import CallOutcome
from .session import Session

log = logging.getLogger("glsandbox")


class AuditedSandbox:
    """Mixin of OSSandbox: emitting, deferring and live-recording audit records."""

    config: OSSandboxConfig
    metrics: SandboxMetrics
    cumulative_metrics: SandboxMetrics
    _session: Session
    _audit: AuditLog | None
    _audit_lock: threading.RLock
    _pending: list[tuple[Any, ...]]
    _defer_audit: bool
    _live_violations: int
    _live_escapes: int
    _closed_audit: bool

    def _flush_audit(self) -> None:
        """Seal records deferred from earlier calls, as one group.

        Runs on the committer thread as soon as a call returns, and on the
        caller's thread while the next call's worker works (waiting for the
        committer if it is busy), so a record is durable before the next call
        returns; close() flushes too.
        """
        with self._audit_lock:
            while self._pending:
                args, kwargs = self._pending.pop(0)
                self._emit(*args, **kwargs)

    def _wake_committer(self) -> None:
        """After a deferred record: let the committer thread seal it now, off the caller's path."""
        wake = getattr(self, "_commit_wake", None)
        if wake is None:
            wake = self._commit_wake = threading.Event()
            threading.Thread(target=self._commit_loop, args=(wake,), name="glsandbox-audit", daemon=True).start()
        wake.set()

    def _commit_loop(self, wake: threading.Event) -> None:
        """Committer thread (host side): seal pending records until the audit log is closed."""
        while True:
            wake.wait()
            wake.clear()
            if self._closed_audit:
                return
            try:
                self._flush_audit()
            except Exception:  # a record it cannot seal as it is, _emit writes marked; this is the rest
                log.exception("the audit committer could not seal a record")

    def _record_live_violation(self, record: dict[str, Any]) -> None:
        """Supervisor/proxy thread: one violation, written to the chain now, counted for the session.

        ``record["call_id"]`` names the running call (None between calls);
        that call's own record lists it again with the same ``call_id``.
        """
        from .supervisor import violation_count

        with self._audit_lock:
            count = violation_count(record)  # a flood's record also counts its suppressed repeats
            self._live_violations += count
            self._live_escapes += count if record.get("escape") else 0
            if self._audit is None or self._closed_audit:
                return
            self._flush_audit()
            event = EventType.ESCAPE_ATTEMPT if record.get("escape") else EventType.VIOLATION
            self._emit(
                event, violations=[record], extra={"live": True, "call_id": record.get("call_id"), "kind": "violation"}
            )

    def _emit(
        self,
        event: EventType,
        *,
        provenance: str | None = None,
        metrics: dict[str, Any] | None = None,
        violations: list[dict[str, Any]] | None = None,
        execution_time: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Seal one record. No content (lone surrogates, odd keys, cycles) stops it being written:
        what cannot be recorded as it is is recorded scrubbed and marked ``audit_fallback``."""
        if self._audit is None:
            return None
        common: dict[str, Any] = {
            "isolation_type": self._session.isolation_type.value,
            "sandbox_mode": self.config.sandbox_mode.value,
            "security_level": self.config.security_level.value,
            "provenance_hash": provenance,
            "execution_time": execution_time,
        }
        fallback = _unrecordable(metrics, violations, extra)
        if fallback is not None:
            metrics, violations = _scrub(metrics), _scrub(violations)
            extra = {**(_scrub(extra) or {}), "audit_fallback": fallback}
        with self._audit_lock:
            try:
                return self._audit.emit(event, metrics=metrics, violations=violations, extra=extra, **common)
            except (TypeError, ValueError, UnicodeError, RecursionError) as exc:  # before anything was written
                log.error("audit record could not be sealed as it is; writing a marked one", exc_info=True)
                reason = f"{type(exc).__name__}: {exc}"[:300].encode("utf-8", "backslashreplace").decode("utf-8")
                return self._audit.emit(event, extra={"audit_fallback": reason, "unrecordable": True}, **common)

    def _record_outcome(
        self,
        outcome: CallOutcome,
        provenance: str,
        error: BaseException | None,
        extra: dict[str, Any],
        *,
        defer: bool = False,
    ) -> dict[str, Any] | None:
        m = outcome.metrics
        self.metrics = m
        self.cumulative_metrics.accumulate(m)
        if self._audit is None:
            return None
        if outcome.call_id is not None:
            extra = {**extra, "call_id": outcome.call_id}
        if outcome.enforced is not None:
            extra = {**extra, "enforcement": outcome.enforced}
        if outcome.state_lost:
            extra = {**extra, "state_lost_before": True}
        controls = self._session.pending_controls
        if controls is not None:
            self._session.pending_controls = None
            extra = {**extra, "controls": controls}
            defer = False
        if isinstance(error, SandboxTimeoutError):
            event = EventType.TIMEOUT
        elif isinstance(error, SandboxMemoryError):
            event = EventType.MEMORY_EXCEEDED
        elif isinstance(error, SandboxEscapeError) or (outcome.violations and m.escape_attempts):
            event = EventType.ESCAPE_ATTEMPT
        elif isinstance(error, SandboxViolationError) or outcome.violations:
            event = EventType.VIOLATION
        elif isinstance(error, SandboxCrashedError):
            event = EventType.WORKER_CRASHED
        elif error is not None:
            event = EventType.EXECUTION_ERROR
        else:
            event = EventType.EXECUTION_SUCCESS
        if error is not None:
            extra = {**extra, "error": f"{type(error).__name__}: {error}"[:2000]}
        kwargs: dict[str, Any] = {
            "provenance": provenance,
            "metrics": m.to_dict(),
            "violations": outcome.violations,
            "execution_time": m.execution_time,
            "extra": extra,
        }
        if defer and self._defer_audit and error is None and not outcome.violations:
            self._pending.append(((event,), kwargs))
            self._wake_committer()
            return None
        self._flush_audit()
        return self._emit(event, **kwargs)


def _unrecordable(*parts: Any) -> str | None:
    """Why ``parts`` cannot go into a record as they are (None: they can). Host side, cheap."""
    try:
        json.dumps(parts, ensure_ascii=False, default=repr, check_circular=True).encode("utf-8")
    except (TypeError, ValueError, UnicodeError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"[:300].encode("utf-8", "backslashreplace").decode("utf-8")
    return None


def _scrub(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON data that always encodes: text escaped, bytes hex, str keys, bounded depth."""
    if depth > 32:
        return "<too deep>"
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:4096]).hex()
    if isinstance(value, dict):
        return {_scrub(str(k)): _scrub(v, depth + 1) for k, v in list(value.items())[:10000]}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, depth + 1) for v in list(value)[:10000]]
    return _scrub(repr(value)[:2000])
