"""The audit side of :class:`~glsandbox_kernel.sandbox.OSSandbox` (host side).

One hash-chained record per event: calls and cells (a successful call's
record group-committed: durable before the next call returns and before
close, see :meth:`.audit.log.AuditLog.append`), violations as they happen
(from the supervisor's thread), session start and end. No content a cell
produces can stop a record from being written: what cannot be sealed as it
is gets written scrubbed and marked ``audit_fallback``.
"""

from __future__ import annotations

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
    _live_violations: int
    _live_escapes: int
    _closed_audit: bool

    def _flush_audit(self) -> None:
        """Make the records of earlier calls durable: sealed in order, one fsync for the batch.

        Called on the caller's thread while the next call's worker works (so a
        record is durable before the next call returns), before a live
        violation is written, and by close(); the shared host loop does it a
        moment after the caller went idle (:meth:`.audit.log.AuditLog.append`).
        """
        if self._audit is not None:
            self._audit.commit()

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
        defer: bool = False,
    ) -> dict[str, Any] | None:
        """Seal one record now (``defer``: group-committed, see :meth:`.audit.log.AuditLog.append`).

        No content (lone surrogates, odd keys, cycles) stops it being written: what cannot
        be recorded as it is, the audit log records scrubbed and marked ``audit_fallback``."""
        if self._audit is None:
            return None
        labels = self.__dict__.get("_audit_labels")
        if labels is None:  # fixed for the session: looked up once
            labels = self.__dict__["_audit_labels"] = {
                "isolation_type": self._session.isolation_type.value,
                "sandbox_mode": self.config.sandbox_mode.value,
                "security_level": self.config.security_level.value,
            }
        fields: dict[str, Any] = {
            **labels,
            "provenance_hash": provenance,
            "execution_time": execution_time,
            "metrics": metrics,
            "violations": violations,
            "extra": extra,
        }
        with self._audit_lock:
            if defer:
                self._audit.append(event, **fields)
                return None
            return self._audit.emit(event, **fields)

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
        extra = dict(extra)  # one copy: the caller's dict is left as it was
        if outcome.call_id is not None:
            extra["call_id"] = outcome.call_id
        if outcome.enforced is not None:
            extra["enforcement"] = outcome.enforced
        if outcome.state_lost:
            extra["state_lost_before"] = True
        controls = self._session.pending_controls
        if controls is not None:
            self._session.pending_controls = None
            extra["controls"] = controls
            defer = False
        if error is None and not outcome.violations:  # the usual call: no isinstance chain
            event = EventType.EXECUTION_SUCCESS
        elif isinstance(error, SandboxTimeoutError):
            event = EventType.TIMEOUT
        elif isinstance(error, SandboxMemoryError):
            event = EventType.MEMORY_EXCEEDED
        elif isinstance(error, SandboxEscapeError) or (outcome.violations and m.escape_attempts):
            event = EventType.ESCAPE_ATTEMPT
        elif isinstance(error, SandboxViolationError) or outcome.violations:
            event = EventType.VIOLATION
        elif isinstance(error, SandboxCrashedError):
            event = EventType.WORKER_CRASHED
        else:
            event = EventType.EXECUTION_ERROR
        if error is not None:
            extra["error"] = f"{type(error).__name__}: {error}"[:2000]
        if isinstance(error, SandboxCrashedError) and error.limit is not None:
            # A limit the host enforced from outside (the CPU time of the whole tree): what it measured.
            extra["limit_exceeded"] = {"limit": error.reason, "value": error.limit, "measured": error.measured}
        elif isinstance(error, SandboxMemoryError) and error.limit is not None and error.peak is not None:
            extra["limit_exceeded"] = {"limit": "memory", "value": error.limit, "measured": error.peak}
        kwargs: dict[str, Any] = {
            "provenance": provenance,
            "metrics": m.to_dict(),
            "violations": outcome.violations,
            "execution_time": m.execution_time,
            "extra": extra,
        }
        return self._emit(event, defer=defer and error is None and not outcome.violations, **kwargs)
