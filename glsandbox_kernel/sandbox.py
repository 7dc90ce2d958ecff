"""The public library API: OSSandbox, execute_strict/moderate/lenient, @sandboxed (host side).

:class:`OSSandbox` wraps one :class:`~glsandbox_kernel.session.Session`
(the persistent worker) and adds what users see: results decoded through the
restricted codec, exceptions mapped to builtins or our own classes, metrics
for the last call and cumulative, and one hash-chained audit record per event.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .audit import AuditLog, EventType, JsonlFileSink, LoggingSink, MemorySink, load_key
from .audit.records import canonical_json
from .config import OSSandboxConfig, SecurityLevel, create_config_by_level
from .exceptions import (
    SandboxCrashedError,
    SandboxError,
    SandboxEscapeError,
    SandboxMemoryError,
    SandboxSecurityError,
    SandboxTimeoutError,
    SandboxViolationError,
)
from .metrics import SandboxMetrics
from .session import CallOutcome, CellResult, InputCallback, OutputCallback, Session, exception_from_reply

log = logging.getLogger("glsandbox")

F = TypeVar("F", bound=Callable[..., Any])

_pickle_cache: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def _dumps_function(fn: Callable[..., Any]) -> bytes:
    """cloudpickle ``fn`` once per function object (host to worker is trusted)."""
    try:
        cached = _pickle_cache.get(fn)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    import cloudpickle

    _by_value_outside_environment(fn)
    data: bytes = cloudpickle.dumps(fn)
    try:
        _pickle_cache[fn] = data
    except TypeError:
        pass
    return data


def _by_value_outside_environment(fn: Callable[..., Any]) -> None:
    """A function whose module lies outside the Python environment (a script's or a test's
    folder, which the sandbox does not see) travels by value, not as an import the worker
    cannot resolve (see :func:`glsandbox_kernel.project.environment_paths`)."""
    import sys

    import cloudpickle

    from .project import environment_paths

    mod = sys.modules.get(getattr(fn, "__module__", None) or "")
    path = getattr(mod, "__file__", None)
    if mod is None or not isinstance(path, str) or mod.__name__ == "__main__":
        return
    real = os.path.realpath(path)
    if not any(real.startswith(p.rstrip("/") + "/") for p in environment_paths()):
        cloudpickle.register_pickle_by_value(mod)


def _sha256(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


class OSSandbox:
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
        if self.config.enable_audit:
            sinks: list[Any] = []
            if self.config.audit_log_path:
                sinks.append(JsonlFileSink(self.config.audit_log_path))
            self._memory_sink = MemorySink()
            sinks += [self._memory_sink, LoggingSink()]
            key = load_key(self.config.audit_key_path)
            self._audit = AuditLog(session_id=self.session_id, sinks=sinks, key=key)
            # Without a file sink a call's record may be sealed while the next
            # call runs (off the hot path); with one, every record is written
            # and fsynced before the call returns.
            self._defer_audit = not self.config.audit_log_path
            self._emit(
                EventType.SESSION_START,
                extra={"config": self.config.to_dict(), "backend": self._session.backend_cls.name},
            )
            if self._session.fallback_reason:
                self._emit(EventType.FALLBACK, extra={"fallback": self._session.fallback_reason})
        self._pending: list[tuple[Any, ...]] = []
        self._collector: _OutputCollector | None = None
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
            try:
                self.close()
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

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

    def _flush_audit(self) -> None:
        """Seal records deferred from earlier calls (runs while the worker works)."""
        while self._pending:
            args, kwargs = self._pending.pop(0)
            self._emit(*args, **kwargs)

    @property
    def audit_log(self) -> AuditLog | None:
        return self._audit

    @property
    def worker_pids(self) -> list[int]:
        """Host pids of the worker tree right now (empty when no worker runs)."""
        worker = self._session.worker
        return worker.host_pids() if worker is not None else []

    def interrupt(self) -> None:
        """Interrupt the running call (SIGINT; killed after the grace period)."""
        self._session.interrupt()

    def restart(self) -> None:
        """Replace the worker with a fresh one."""
        self._session.restart()

    def close(self) -> None:
        """Stop the worker and everything it started, and remove its files."""
        if self._closed:
            return
        self._closed = True
        import time

        t0 = time.perf_counter()
        self._session.close()
        self.metrics.cleanup_time = time.perf_counter() - t0
        if self._audit is not None:
            self._flush_audit()
            self._emit(EventType.SESSION_END, metrics=self.cumulative_metrics.to_dict())
            self._audit.close()

    # -- audit ----------------------------------------------------------------------
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
        if self._audit is None:
            return None
        return self._audit.emit(
            event,
            isolation_type=self._session.isolation_type.value,
            sandbox_mode=self.config.sandbox_mode.value,
            security_level=self.config.security_level.value,
            provenance_hash=provenance,
            execution_time=execution_time,
            metrics=metrics,
            violations=violations,
            extra=extra,
        )

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
            return None
        self._flush_audit()
        return self._emit(event, **kwargs)

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
        import cloudpickle

        fn_bytes = _dumps_function(fn)
        arg_bytes = cloudpickle.dumps((args, kwargs)) if (args or kwargs) else b""
        msg: dict[str, Any] = {"type": "call", "fn": fn_bytes, "args": arg_bytes}
        if script:
            msg["script"] = True
        limit = self.config.execution_timeout if timeout == "config" else timeout
        provenance = ""
        before = self._writes.snapshot() if self._writes is not None else None

        def bookkeeping() -> None:  # runs while the worker works
            nonlocal provenance
            provenance = _sha256(fn_bytes, arg_bytes, self._config_bytes)
            self._flush_audit()

        outcome = self._session.request(
            msg,
            timeout=limit,  # type: ignore[arg-type]
            on_message=_relay_streams,
            monitor_context={"kind": "call"},  # type: ignore[arg-type]
            overlap=bookkeeping,
        )
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
                error = exception_from_reply(reply, self.config, outcome.metrics.memory_peak_bytes)
        if outcome.violations:
            try:
                self._session.raise_for_violations(outcome.violations)
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
                "function": getattr(fn, "__qualname__", repr(fn))[:200],
                **self._written_since(before),
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
    ) -> CellResult:
        """Run one notebook cell in the worker's IPython shell.

        ``on_output`` receives each output message as it happens (stream,
        display_data, update_display_data, execute_result, error, clear_output);
        ``on_input(prompt, password)`` answers ``input()``; ``on_comm`` receives
        comm_open/comm_msg/comm_close messages from sandboxed widgets.
        """
        collector = _OutputCollector(on_output, on_input, on_comm)
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
        provenance = _sha256(code.encode("utf-8", "surrogatepass"), b"", self._config_bytes)
        before = self._writes.snapshot() if self._writes is not None else None
        try:
            outcome = self._session.request(
                msg,
                timeout=limit,  # type: ignore[arg-type]
                on_message=collector.handle,
                reply_types=("cell_reply",),
                monitor_context={"kind": "cell"},
            )
        finally:
            self._collector = None
            with collector._lock:
                collector._closed = True
        reply = outcome.reply or {}
        count = reply.get("execution_count")
        result = CellResult(
            status="ok",
            outputs=[out for out in collector.outputs if not out.get("_mark")],
            execution_count=count if isinstance(count, int) else None,
            metrics=outcome.metrics,
            violations=outcome.violations,
            state_lost=outcome.state_lost,
        )
        if isinstance(reply.get("payload"), list):
            result.payload = [p for p in reply["payload"] if isinstance(p, dict)]
        if isinstance(reply.get("user_expressions"), dict):
            result.user_expressions = reply["user_expressions"]
        # What the user's code raised (reported by the worker, shown as its traceback).
        audit_error: BaseException | None = None
        if reply.get("status") == "error":
            result.status = "error"
            result.error_name = str(reply.get("ename"))
            result.error_value = str(reply.get("evalue"))
            tb = reply.get("traceback")
            result.traceback = [str(x) for x in tb] if isinstance(tb, list) else []
            if result.error_name == "MemoryError":
                audit_error = SandboxMemoryError(
                    "the cell exceeded the memory limit",
                    limit=self.config.limits.memory_limit_bytes,
                    peak=outcome.metrics.memory_peak_bytes,
                )
            else:
                audit_error = SandboxError(f"{result.error_name}: {result.error_value}")
        # What the sandbox did about it (measured outside): timeout, kill, violation.
        failure: BaseException | None = outcome.error
        if failure is None and outcome.violations:
            try:
                self._session.raise_for_violations(outcome.violations)
            except SandboxViolationError as exc:
                failure = exc
        if failure is not None:
            audit_error = failure
            result.status = "error"
            result.error_name = type(failure).__name__
            result.error_value = str(failure)
            result.traceback = [f"{result.error_name}: {result.error_value}"]
            message = {
                "type": "error",
                "ename": result.error_name,
                "evalue": result.error_value,
                "traceback": result.traceback,
            }
            collector.handle(message)
        from .notebook.evidence import outputs_evidence

        # A clear_output(wait=True) still pending is carried out by the frontend at the next
        # output the kernel shows (the audit output at least), so nothing of these remains.
        shown = [] if collector.clear_pending else collector.outputs
        result.audit_record = self._record_outcome(
            outcome,
            provenance,
            audit_error,
            {
                "kind": "cell",
                "source_hash": hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest(),
                **outputs_evidence(shown),
                **self._written_since(before),
            },
        )
        return result

    def _written_since(self, before: Any) -> dict[str, Any]:
        """``{"written_files": [...]}`` for the audit record when the sandbox can write host folders."""
        if self._writes is None or before is None:
            return {}
        return {"written_files": self._writes.changes(before)}

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
        """A quick request (complete, inspect, is_complete, history) and its reply."""
        outcome = self._session.request(msg, timeout=timeout, reply_types=(reply_type,))
        if outcome.error is not None:
            raise outcome.error
        return outcome.reply or {}

    def send_comm(
        self,
        msg: dict[str, Any],
        *,
        on_output: OutputCallback | None = None,
        on_comm: OutputCallback | None = None,
        timeout: float | None = 30.0,
    ) -> None:
        """Deliver a frontend comm message to the sandbox's comm manager; relay what it outputs."""
        collector = _OutputCollector(on_output, None, on_comm)
        outcome = self._session.request(
            dict(msg), timeout=timeout, on_message=collector.handle, reply_types=("comm_done",)
        )
        if outcome.error is not None:
            raise outcome.error


def _relay_streams(msg: dict[str, Any]) -> None:
    """Function calls: print the worker's stdout/stderr on the host's streams."""
    if msg.get("type") == "stream":
        stream = sys.stderr if msg.get("name") == "stderr" else sys.stdout
        text = msg.get("text")
        if isinstance(text, str):
            stream.write(text)
            stream.flush()


class _OutputCollector:
    """Turns worker output frames into nbformat outputs and relays them live."""

    def __init__(
        self, on_output: OutputCallback | None, on_input: InputCallback | None, on_comm: OutputCallback | None
    ) -> None:
        self.on_output = on_output
        self.on_input = on_input
        self.on_comm = on_comm
        self.outputs: list[dict[str, Any]] = []
        self._clear_pending = False
        self._lock = threading.Lock()
        self._closed = False

    @property
    def clear_pending(self) -> bool:
        """A ``clear_output(wait=True)`` waits for the next output."""
        return self._clear_pending

    def mark(self, output: dict[str, Any], publish: Callable[[], None] | None) -> bool:
        """See :meth:`OSSandbox.mark_output`."""
        with self._lock:
            if self._closed:
                return False
            self._record({**output, "type": str(output.get("output_type", "display_data")), "_mark": True})
            if publish is not None:
                publish()
            return True

    def handle(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        kind = msg.get("type")
        if kind == "input_request":
            value = ""
            if self.on_input is not None:
                try:
                    value = self.on_input(str(msg.get("prompt", "")), bool(msg.get("password")))
                except (EOFError, KeyboardInterrupt):
                    return {"type": "input_reply", "value": None}
            return {"type": "input_reply", "value": value}
        if kind in ("comm_open", "comm_msg", "comm_close"):
            if self.on_comm is not None:
                self.on_comm(msg)
            return None
        if kind not in ("stream", "display_data", "update_display_data", "execute_result", "error", "clear_output"):
            return None
        with self._lock:
            # ``on_output`` may return the frame as it published it (the kernel renames
            # sandbox-limit errors): that is what the frontend saves, so that is recorded.
            shown = self.on_output(msg) if self.on_output is not None else None
            self._record(shown if isinstance(shown, dict) and shown.get("type") == kind else msg)
        return None

    def _record(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "clear_output":
            if msg.get("wait"):
                self._clear_pending = True
            else:
                self.outputs.clear()
            return
        if self._clear_pending:
            self.outputs.clear()
            self._clear_pending = False
        if kind == "stream":
            text = msg.get("text") if isinstance(msg.get("text"), str) else ""
            name = "stderr" if msg.get("name") == "stderr" else "stdout"
            if self.outputs and self.outputs[-1].get("output_type") == "stream" and self.outputs[-1]["name"] == name:
                self.outputs[-1]["text"] += text
            else:
                self.outputs.append({"output_type": "stream", "name": name, "text": text})
        elif kind == "display_data":
            out: dict[str, Any] = {
                "output_type": "display_data",
                "data": _dict(msg.get("data")),
                "metadata": _dict(msg.get("metadata")),
            }
            display_id = _dict(msg.get("transient")).get("display_id")
            if display_id:
                out["_display_id"] = display_id
            if msg.get("_mark"):
                out["_mark"] = True
            self.outputs.append(out)
        elif kind == "update_display_data":
            display_id = _dict(msg.get("transient")).get("display_id")
            for out in self.outputs:
                if display_id and out.get("_display_id") == display_id:
                    out["data"] = _dict(msg.get("data"))
                    out["metadata"] = _dict(msg.get("metadata"))
        elif kind == "execute_result":
            self.outputs.append(
                {
                    "output_type": "execute_result",
                    "data": _dict(msg.get("data")),
                    "metadata": _dict(msg.get("metadata")),
                    "execution_count": msg.get("execution_count")
                    if isinstance(msg.get("execution_count"), int)
                    else None,
                }
            )
        elif kind == "error":
            tb = msg.get("traceback")
            self.outputs.append(
                {
                    "output_type": "error",
                    "ename": str(msg.get("ename")),
                    "evalue": str(msg.get("evalue")),
                    "traceback": [str(x) for x in tb] if isinstance(tb, list) else [],
                }
            )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# -- one-shot helpers -------------------------------------------------------------------------


def _execute_with_level(
    level: SecurityLevel, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
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
