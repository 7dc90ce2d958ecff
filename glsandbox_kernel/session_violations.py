"""Violations of a session's worker, attributed to the running call (HOST side).

A mixin of :class:`~glsandbox_kernel.session.Session`. The supervisor and
the network proxy report violations from their own threads
(:meth:`ViolationAttribution._on_violation`); each belongs to the running
call when there is one (``call_id``), else to the session alone. It is
handed to ``violation_recorder`` (the audit chain, at once) and to the live
listeners (the kernel's banner); in enforcing mode a trusted one stops the
running call (``STOP_SIGNAL``). :meth:`raise_for_violations` turns a call's
violations into the error its caller gets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .backends.base import WorkerProcess
from .config import OSSandboxConfig, SandboxMode
from .exceptions import ForgedFrame, SandboxEscapeError, SandboxSecurityError, SandboxViolationError
from .protocol import STOP_SIGNAL

log = logging.getLogger("glsandbox.session")


class ViolationAttribution:
    """The violation side of a session (state lives on the session, set in its ``__init__``)."""

    config: OSSandboxConfig
    session_id: str
    worker: WorkerProcess | None
    violation_listeners: list[Callable[[dict[str, Any]], None]]
    violation_recorder: Callable[[dict[str, Any]], None] | None
    _violations: list[dict[str, Any]]
    _violations_lock: threading.Lock
    _running_call: int | None
    _stop_at: float | None
    kill_worker: Callable[[], None]

    def _on_violation(self, record: dict[str, Any]) -> None:
        """Supervisor/proxy thread (or host code): one violation, attributed and recorded now.

        It belongs to the running call when there is one (``call_id``), else
        to the session alone: the next call does not carry it.
        """
        rec = dict(record)
        with self._violations_lock:
            call = self._running_call
            rec["session_id"] = self.session_id
            rec["call_id"] = call
            if call is not None:
                self._violations.append(rec)
        if call is not None and rec.get("trusted") and self.config.sandbox_mode is not SandboxMode.PERMISSIVE:
            self._stop_running_call()
        recorder = self.violation_recorder
        if recorder is not None:
            try:
                recorder(rec)
            except Exception:  # the banner and the call still get it
                log.exception("could not record a violation in the audit log")
        for listener in list(self.violation_listeners):
            try:
                listener(dict(rec))
            except Exception:  # a broken banner must not lose the violation
                log.warning("violation listener failed", exc_info=True)

    def _stop_running_call(self) -> None:
        """Enforcing mode: make the sandboxed code raise SandboxStopped now (killed after the grace)."""
        if self._stop_at is not None:
            return
        self._stop_at = time.monotonic()
        worker = self.worker
        if worker is not None:
            try:
                worker.send_signal(STOP_SIGNAL)
            except OSError:
                log.warning("could not signal the worker to stop", exc_info=True)

    def note_violation(self, record: dict[str, Any]) -> None:
        """A violation the host itself detected (a tampered reply, a forged comm frame)."""
        self._on_violation({"time": time.time(), "trusted": True, "source": "host", **record})

    def _refused_frame(self, exc: SandboxSecurityError) -> SandboxSecurityError:
        """The session's request, on a frame its channel refused (oversize, malformed, forged): the worker is
        killed (the channel is out of step); a forged one (:class:`ForgedFrame`) is also a protocol violation
        of the running call, recorded with it. Returns the call's error."""
        self.kill_worker()
        if isinstance(exc, ForgedFrame):
            self.note_violation({"kind": "protocol", "detail": str(exc), "action": "refused", "escape": False})
            self._stop_at = None  # nothing to stop: the worker is gone already (not "stopped at once")
        return exc

    def _take_violations(self) -> list[dict[str, Any]]:
        with self._violations_lock:
            out, self._violations = self._violations, []
        return out

    def raise_for_violations(self, violations: list[dict[str, Any]], enforced: str | None = None) -> None:
        """In enforcing mode, fail the call when something forbidden was tried; say what was done."""
        if not violations or self.config.sandbox_mode is SandboxMode.PERMISSIVE:
            return
        if enforced == "stopped":
            done = "; the call was stopped at once (enforcing mode)"
        elif enforced == "killed":
            done = (
                f"; the code kept running {self.config.interrupt_grace_seconds:g} s after it was told to stop, "
                "so the worker and every process it started were killed and its state is lost (enforcing mode)"
            )
        else:
            done = "; the call failed (enforcing mode)"
        escapes = [v for v in violations if v.get("escape")]
        if escapes and self.config.detect_escape_attempts:
            what = ", ".join(sorted({str(v.get("detail") or v.get("syscall")) for v in escapes}))
            raise SandboxEscapeError(f"sandbox escape attempt blocked: {what}{done}", violations=violations)
        what = ", ".join(sorted({str(v.get("detail") or v.get("syscall")) for v in violations}))
        if all(v.get("kind") == "exec" and not v.get("escape") for v in violations):  # often a library's probe
            raise SandboxViolationError(
                f"this sandbox starts no new programs: {what} refused (not an escape attempt){done}; "
                "to allow a program, name it in whitelist.allowed_executables or use a level that allows them",
                violations=violations,
            )
        raise SandboxViolationError(f"sandbox policy violation blocked: {what}{done}", violations=violations)
