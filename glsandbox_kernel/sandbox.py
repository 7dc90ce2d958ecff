"""The public library API: OSSandbox, execute_strict/moderate/lenient, @sandboxed (host side).

:class:`OSSandbox` wraps one :class:`~glsandbox_kernel.session.Session`
(the persistent worker) and adds what users see: results decoded through the
restricted codec, exceptions mapped to builtins or our own classes, metrics
for the last call and cumulative, and one hash-chained audit record per event.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .audit import AuditLog, EventType, JsonlFileSink, LoggingSink, MemorySink, load_key
from .audit.records import canonical_json
from .config import OSSandboxConfig, SecurityLevel, create_config_by_level
from .exceptions import (
    SandboxSecurityError,
    SandboxViolationError,
)
from .metrics import SandboxMetrics
from .notebook.sealed_run import session_start_extra
from .output_budget import OutputBudget
from .outputs import OutputCollector, relay_streams
from .pickling import call_message, call_provenance, sha256_parts
from .results import CellResult, cell_error, error_fields, exception_from_reply, refuse_tampered
from .sandbox_audit import AuditedSandbox
from .session import InputCallback, OutputCallback, Session
from .shell_start import carry_over, start_shell

log = logging.getLogger("glsandbox")

F = TypeVar("F", bound=Callable[..., Any])
LOOKUP_TIMEOUT = 5.0  #: seconds a completion or inspection may take before its reply is abandoned


class OSSandbox(AuditedSandbox):
    """A sandbox session: a context manager around one persistent worker.

    ``execute(fn, *args, **kwargs)`` returns ``fn``'s result; ``run_cell(code)``
    returns a :class:`CellResult`. The worker starts on first use (or on
    ``__enter__``) and keeps its state between calls.
    """

    def __init__(self, config: OSSandboxConfig | None = None, *, session_id: str | None = None) -> None:
        self.config = config or OSSandboxConfig()
        self._session = Session(self.config, session_id=session_id)
        self.session_id = self._session.session_id
        self.metrics = SandboxMetrics(isolation_type=self._session.isolation_type.value)
        self.cumulative_metrics = SandboxMetrics(isolation_type=self._session.isolation_type.value)
        self._config_bytes = canonical_json(self.config.to_dict())
        self._audit: AuditLog | None = None
        # Orders deferred records and live violations (written from the supervisor's thread).
        self._audit_lock = threading.RLock()
        self._live_violations = 0
        self._live_escapes = 0
        self._closed_audit = False
        self._session.violation_recorder = self._record_live_violation
        if self.config.enable_audit:
            sinks: list[Any] = []
            if self.config.audit_log_path:
                sinks.append(JsonlFileSink(self.config.audit_log_path))
            self._memory_sink = MemorySink()
            sinks += [self._memory_sink, LoggingSink()]
            key = load_key(self.config.audit_key_path)
            self._audit = AuditLog(session_id=self.session_id, sinks=sinks, key=key)
            self._emit(
                EventType.SESSION_START,
                extra={
                    "config": self.config.to_dict(),
                    "backend": self._session.backend_cls.name,
                    **session_start_extra(key is not None),  # run or signing kernel: the chain commits to a seal
                },
            )
            if self._session.fallback_reason:
                self._emit(EventType.FALLBACK, extra={"fallback": self._session.fallback_reason})
        self._collector: OutputCollector | None = None
        self._shell_generation = 0  # the worker generation whose IPython shell is built (0: none yet)
        self._looked_up: dict[Any, int] = {}  # lookup kind -> the worker generation that answered one
        self._closed = False
        from .written_files import tracker_for

        self._writes = tracker_for(self.config)  # files the sandbox writes -> audit "written_files"

    # -- context manager ------------------------------------------------------------
    def __enter__(self) -> OSSandbox:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):  # interpreter shutdown
                self.close()

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker now (otherwise it starts on first use)."""
        setup = self._session.ensure_started()
        if setup is not None:
            self.metrics.setup_time = setup

    @property
    def isolation_type(self) -> str:
        return self._session.isolation_type.value

    @property
    def session(self) -> Session:
        """The underlying session (kernel and magic use it for interrupts and monitors)."""
        return self._session

    @property
    def audit_records(self) -> list[dict[str, Any]]:
        """Every audit record of this session, in order (copies)."""
        self._flush_audit()
        return list(self._memory_sink.records) if self._audit is not None else []

    def record_violation(self, record: dict[str, Any]) -> None:
        """A violation the host detected itself (the magic's tampered ``--out`` reply, a forged comm); it goes
        the way supervisor violations go: audit chain at once, banners, the running call when there is one."""
        self._session.note_violation(record)

    @property
    def audit_log(self) -> AuditLog | None:
        return self._audit

    @property
    def worker_pids(self) -> list[int]:
        """Host pids of the worker tree right now (empty when no worker runs)."""
        return self._session.host_pids()

    def interrupt(self, operation: int | None = None) -> bool:
        """Interrupt the running call or cell, or ``operation`` (see :meth:`Session.interrupt`)."""
        return self._session.interrupt(operation)

    def restart(self) -> None:
        """Replace the worker with a fresh one."""
        self._session.restart()

    def close(self) -> None:
        """Stop the worker and everything it started, and remove its files."""
        if self._closed:
            return
        self._closed = True
        t0 = time.perf_counter()
        self._session.close()
        self.metrics.cleanup_time = time.perf_counter() - t0
        if self._audit is not None:
            with self._audit_lock:
                self._flush_audit()
                totals = self.cumulative_metrics.to_dict()
                # Every violation of the session, also those between calls (written live).
                totals["violations_detected"] = max(totals["violations_detected"], self._live_violations)
                totals["escape_attempts"] = max(totals["escape_attempts"], self._live_escapes)
                written = self._writes.final() if self._writes is not None else None  # the worker is gone
                extra = {"written_files": written} if written is not None else None
                self._emit(EventType.SESSION_END, metrics=totals, extra=extra)
                self._closed_audit = True
            self._audit.close()

    # -- functions --------------------------------------------------------------------
    def execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in the worker and return its result.

        The result must be of an allowlisted type (see :mod:`glsandbox_kernel.codec`).
        """
        return self._call(fn, args, kwargs)

    def _call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        script: bool = False,
        timeout: float | str | None = "config",
    ) -> Any:
        msg, fn_bytes, arg_bytes = call_message(fn, args, kwargs, script=script)
        limit = self.config.execution_timeout if timeout == "config" else timeout
        provenance = ""
        before, between = self._writes.begin() if self._writes is not None else (None, [])

        def bookkeeping() -> None:  # runs while the worker works
            nonlocal provenance
            provenance = call_provenance(fn_bytes, arg_bytes, self._config_bytes)
            if self._audit is not None:
                self._audit.commit()  # the last call's record sealed and durable (see AuditLog) before this returns

        outcome = self._session.request(
            msg,
            timeout=limit,  # type: ignore[arg-type]
            on_message=relay_streams,
            monitor_context={"kind": "call"},
            overlap=bookkeeping,
        )
        outcome = refuse_tampered(outcome, self._session)  # a forged reply: a protocol violation, recorded
        if not provenance:
            bookkeeping()
        error: BaseException | None = outcome.error
        value: Any = None
        if error is None:
            reply = outcome.reply or {}
            if reply.get("refused"):
                error = SandboxSecurityError(
                    f"the sandbox returned a value of type {reply['refused']} which is not allowed "
                    "to cross the boundary (allowed: builtins, datetime, Decimal, Fraction, numpy, pandas)"
                )
            elif reply.get("ok"):
                value = reply.get("value")
            else:
                m, interrupted = outcome.metrics, self._session.interrupted
                error = exception_from_reply(
                    reply, self.config, m.memory_peak_bytes, interrupted=interrupted, measured_by=m.measured_by
                )
        if outcome.violations:
            try:
                self._session.raise_for_violations(outcome.violations, outcome.enforced)
            except SandboxViolationError as exc:
                if error is not None:
                    exc.__cause__ = error
                error = exc
        self._record_outcome(
            outcome,
            provenance,
            error,
            {
                "kind": "call",
                "function": (getattr(fn, "__qualname__", None) or repr(fn))[:200],  # repr only when needed
                **self._written_since(before, between),
            },
            defer=True,
        )
        if error is not None:
            raise error
        return value

    # -- cells --------------------------------------------------------------------------
    def run_cell(
        self,
        code: str,
        *,
        on_output: OutputCallback | None = None,
        on_input: InputCallback | None = None,
        on_comm: OutputCallback | None = None,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, str] | None = None,
        timeout: float | str | None = "config",
        allow_stdin: bool | None = None,
        on_start: Callable[[], None] | None = None,
        before_seal: Callable[[CellResult], None] | None = None,
        record_extra: dict[str, Any] | None = None,
        judge: Any = None,
    ) -> CellResult:
        """Run one notebook cell in the worker's IPython shell.

        ``on_output`` receives each output message as it happens (stream,
        display_data, update_display_data, execute_result, error, clear_output);
        ``on_input(prompt, password)`` answers ``input()``; ``on_comm`` receives
        comm_open/comm_msg/comm_close messages from sandboxed widgets.
        ``on_output`` returns the frame as published (recorded) or ``outputs.NOT_SHOWN`` (nothing recorded).
        ``on_start()`` (before the cell is sent) and ``before_seal(result)``
        (after it ended, before its audit record is sealed) are where the
        kernel publishes its own outputs through :meth:`mark_output`, so that
        the record lists every output of the cell, each with its origin.
        ``record_extra``: more fields for the record's ``extra`` (the magic's ``magic_line``).
        ``judge``: the kernel's per-cell guard (kernel/limits.py): the record gives the verdict it shows.
        """
        collector = OutputCollector(on_output, on_input, on_comm)
        collector.budget = OutputBudget.for_memory_limit(self.config.limits.memory_limit_bytes)  # outputs kept
        self._collector = collector
        msg: dict[str, Any] = {
            "type": "cell",
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions or {},
            "allow_stdin": on_input is not None if allow_stdin is None else allow_stdin,
        }
        limit = self.config.execution_timeout if timeout == "config" else timeout
        provenance = sha256_parts(code.encode("utf-8", "surrogatepass"), b"", self._config_bytes)
        before, between = self._writes.begin() if self._writes is not None else (None, [])
        try:
            with self._session.operation():  # an interrupt from here on is this cell's (also in on_start)
                if on_start is not None:
                    on_start()
                outcome = start_shell(self._session, self._shell_generation)  # not on the cell's clock
                if outcome is None or outcome.error is None:
                    cell = self._session.request(
                        msg,
                        timeout=limit,  # type: ignore[arg-type]
                        on_message=collector.handle,
                        reply_types=("cell_reply",),
                        monitor_context={"kind": "cell"},
                    )
                    outcome = carry_over(outcome, cell)
            self._shell_generation = self._session.generation
        except BaseException:
            self._collector = None
            with collector._lock:
                collector._closed = True
            raise
        outcome = refuse_tampered(outcome, self._session, collector.tampered)  # a forged reply or prompt
        reply = outcome.reply or {}
        count = reply.get("execution_count")
        result = CellResult(
            status="ok",
            outputs=[out for out in collector.outputs if not out.get("_mark")],
            execution_count=count if isinstance(count, int) else None,
            metrics=outcome.metrics,
            violations=outcome.violations,
            state_lost=outcome.state_lost,
            enforcement=outcome.enforced,
        )
        if isinstance(reply.get("payload"), list):
            result.payload = [p for p in reply["payload"] if isinstance(p, dict)]
        result.ask_exit = reply.get("ask_exit") is True  # a bool flag: the kernel writes the payload itself
        if isinstance(reply.get("user_expressions"), dict):
            result.user_expressions = reply["user_expressions"]
        # What the user's code raised (reported by the worker, shown as its traceback).
        audit_error: BaseException | None = None
        if reply.get("status") == "error":
            result.status = "error"
            result.error_name, result.error_value, result.traceback = error_fields(reply)  # bounded text
            # a MemoryError is a limit verdict only on the host's own measurement (results.cell_error)
            audit_error = cell_error(self.config, result, outcome.metrics, judge)  # and shows it in result
        # What the sandbox did about it (measured outside): timeout, kill, violation.
        failure = judge.host_error(outcome.error, outcome.metrics) if outcome.error and judge else outcome.error
        if failure is None and outcome.violations:
            try:
                self._session.raise_for_violations(outcome.violations, outcome.enforced)
            except SandboxViolationError as exc:
                failure = exc
        if failure is not None:
            audit_error = failure
            result.status = "error"
            result.error_by_host = True
            result.error_name = type(failure).__name__
            result.error_value = str(failure)
            result.traceback = [f"{result.error_name}: {result.error_value}"]
            message = {"type": "error", "ename": result.error_name, "evalue": result.error_value}
            collector.handle({**message, "traceback": result.traceback}, by_host=True)
        try:
            if before_seal is not None:
                before_seal(result)
        finally:
            self._collector = None
            with collector._lock:
                collector._closed = True
        from .notebook.evidence import outputs_evidence

        # A clear_output(wait=True) still pending is carried out by the frontend at the next
        # output the kernel shows (the audit output at least), so nothing of these remains.
        shown = [] if collector.clear_pending else collector.outputs
        try:
            evidence = outputs_evidence(shown)
        except Exception as exc:  # noqa: BLE001 - no output may stop the record: it is written, marked
            reason = f"{type(exc).__name__}: {exc}"[:300].encode("utf-8", "backslashreplace").decode("utf-8")
            evidence = {"outputs_hash": None, "outputs_count": len(shown), "outputs_evidence_error": reason}
        evidence.update(collector.budget.record_fields())  # what the output budget dropped, if anything
        result.audit_record = self._record_outcome(
            outcome,
            provenance,
            audit_error,
            {
                **(record_extra or {}),
                "kind": "cell",
                "source_hash": hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest(),
                **evidence,
                **self._written_since(before, between),
            },
        )
        return result

    def _written_since(self, before: Any, between: list[dict[str, Any]]) -> dict[str, Any]:
        """``{"written_files": [...]}``: what changed since the last call ended ("between calls"), then in the call."""
        return {} if self._writes is None else {"written_files": between + self._writes.end(before)}

    def mark_output(self, output: dict[str, Any], publish: Callable[[], None] | None = None) -> bool:
        """Record a host-made output (monitor widget, banner) in the running cell's outputs.

        Called by the kernel, from any thread, while ``run_cell`` runs:
        ``publish`` (which sends the output to the frontend) runs under the
        lock that orders the worker's outputs, so the collected outputs and
        the frontend's agree on where it sits. The output is excluded from the
        outputs hash by its role, but separates the streams around it as it
        does in the frontend. Returns False (and publishes nothing) when no
        cell is running.
        """
        collector = self._collector
        if collector is None:
            return False
        return collector.mark(output, publish)

    def request(self, msg: dict[str, Any], reply_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """A quick request (complete, inspect, is_complete, history) and its reply. A completion or inspection
        past its timeout (:data:`LOOKUP_TIMEOUT` after a worker's first of its kind) is abandoned, the worker kept."""
        kind = msg.get("type")
        if lookup := kind in ("complete", "inspect"):
            if type(cur := msg.get("cursor_pos")) is int:  # one past the code made the completer kill the worker
                msg["cursor_pos"] = min(max(cur, 0), len(str(msg.get("code", ""))))
            if self._looked_up.get(kind) == self._session.generation:
                timeout = min(timeout, LOOKUP_TIMEOUT)
        outcome = self._session.request(msg, timeout=timeout, reply_types=(reply_type,), abandon_late=lookup)
        if outcome.error is not None:
            raise outcome.error
        if lookup:
            self._looked_up[kind] = self._session.generation
        self._shell_generation = self._session.generation  # every request but a call goes to the shell
        return outcome.reply or {}

    def send_comm(
        self,
        msg: dict[str, Any],
        *,
        on_output: OutputCallback | None = None,
        on_comm: OutputCallback | None = None,
        timeout: float | str | None = "config",
    ) -> None:
        """Deliver a frontend comm message; relay its outputs. Bounded as a cell (``"config"``): then killed."""
        collector = OutputCollector(on_output, None, on_comm)
        limit = self.config.execution_timeout if isinstance(timeout, str) else timeout  # "config"
        outcome = self._session.request(
            dict(msg), timeout=limit, on_message=collector.handle, reply_types=("comm_done",)
        )
        if outcome.error is not None:
            raise outcome.error


# -- one-shot helpers -------------------------------------------------------------------------


def _execute_with_level(level: SecurityLevel, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
    with OSSandbox(create_config_by_level(level)) as sandbox:
        return sandbox.execute(fn, *args, **kwargs)


def execute_strict(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` once in a fresh STRICT sandbox and return its result."""
    return _execute_with_level(SecurityLevel.STRICT, fn, args, kwargs)


def execute_moderate(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` once in a fresh MODERATE sandbox and return its result."""
    return _execute_with_level(SecurityLevel.MODERATE, fn, args, kwargs)


def execute_lenient(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` once in a fresh LENIENT sandbox and return its result."""
    return _execute_with_level(SecurityLevel.LENIENT, fn, args, kwargs)


def sandboxed(
    config: OSSandboxConfig | SecurityLevel | str | Callable[..., Any] | None = None,
    *,
    persistent: bool = False,
    **overrides: Any,
) -> Any:
    """Decorator: every call of the function runs in a sandbox.

    ``@sandboxed``, ``@sandboxed("strict")``, ``@sandboxed(config)`` or
    ``@sandboxed(level, execution_timeout=5)``. With ``persistent=True`` one
    session is kept for all calls (close it with ``fn.sandbox.close()``).
    """
    if callable(config) and not isinstance(config, (OSSandboxConfig, SecurityLevel, str)):
        return sandboxed()(config)
    if isinstance(config, (SecurityLevel, str)):
        cfg = create_config_by_level(config, **overrides)
    else:
        cfg = (config or OSSandboxConfig()).replace(**overrides) if overrides else (config or OSSandboxConfig())

    def decorate(fn: F) -> F:
        holder: dict[str, OSSandbox] = {}

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if persistent:
                box = holder.get("box")
                if box is None:
                    box = holder["box"] = OSSandbox(cfg)
                return box.execute(fn, *args, **kwargs)
            with OSSandbox(cfg) as box:
                return box.execute(fn, *args, **kwargs)

        wrapper.sandbox_config = cfg  # type: ignore[attr-defined]
        wrapper.__wrapped_sandboxed__ = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
