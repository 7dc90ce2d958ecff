"""SandboxKernel: a Jupyter kernel whose every cell runs in a sandboxed worker (host side).

The kernel process is trusted and runs no user code. It speaks the Jupyter
protocol through ipykernel's :class:`~ipykernel.kernelbase.Kernel` (it
overrides only the ``do_*`` handlers and a few request handlers that have no
``do_*`` hook) and relays each request to one persistent
:class:`~glsandbox_kernel.sandbox.OSSandbox` session:

- execute: ``run_cell`` in a thread (``asyncio.to_thread``), so the control
  channel (interrupt, shutdown) stays responsive while a cell runs; outputs
  are published live by :class:`~glsandbox_kernel.kernel.relay.IOPubRelay`.
- complete / inspect / is_complete / history / comm_info: quick requests.
- comms (:class:`~glsandbox_kernel.kernel.comms.FrontendComms`): frontend
  ``comm_open``/``comm_msg``/``comm_close`` go to the sandbox's comm manager,
  each callback bounded by the kernel's ``timeout``; sandbox comm frames come
  back as IOPub messages, so ipywidgets created in the sandbox work both ways.
- stdin: ``input()``/``getpass()`` in a cell become ``input_request`` on the
  stdin channel, answered by the frontend (and abandoned on interrupt).
- interrupt (``interrupt_mode: message``): SIGINT to the worker, killed after
  the session's grace period.
- evidence and monitoring (:class:`~glsandbox_kernel.widgets.integration.KernelEvidence`):
  each cell gets a live metrics widget (or a static summary), a violation
  banner, and ends with its audit output; frontend messages for the kernel's
  own widget comms are handled here, not relayed; ``usage_request`` is answered
  with the sandbox's figures.

Sandbox failures (timeout, memory, violation, crash) become error replies with a clear
``ename``/``evalue``; the next cell gets a fresh worker and a "state lost" notice. Launched by
``python -m glsandbox_kernel.kernel``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from ipykernel.kernelbase import Kernel
from traitlets import Float

from .._version import __version__
from ..active_content import clean_user_expressions
from ..config import OSSandboxConfig
from ..notebook.evidence import cell_binding
from .comms import FrontendComms
from .limits import (
    CellLimitGuard,
    CellOptions,
    CellOptionsError,
    cap_to_session,
    rewrite_error,
    split_cell_options,
)
from .options import config_from_traits, option_values, relay_input, take_start_notices
from .parents import InOrder, TaskParents
from .prestart import go, take_sandbox, trace
from .quick import QuickRequests
from .relay import CommGate, IOPubRelay, as_dict, as_lines, json_safe, log, safe_payload
from .startup import StartUp
from .traits import KernelOptions

_STATE_LOST_NOTICE = (
    "glsandbox: the sandbox worker was stopped ({reason}); variables, imports and definitions from "
    "earlier cells are lost. This cell runs in a fresh sandbox.\n"
)


class SandboxKernel(TaskParents, StartUp, QuickRequests, FrontendComms, KernelOptions, Kernel):
    """The ``glsandbox`` kernel: ipykernel's protocol handling, cells in an OSSandbox.

    Options (kernelspec argv ``--SandboxKernel.level=strict`` or a traitlets
    config file, e.g. ``glsandbox_kernel_config.json``): see :class:`.traits.KernelOptions`.
    """

    implementation = "glsandbox"
    implementation_version = __version__
    banner = (
        f"Python {sys.version.split()[0]} in a glsandbox sandbox (glsandbox {__version__}).\n"
        "Every cell runs in a persistent, confined worker; the kernel itself runs no user code."
    )
    language_info = {
        "name": "python",
        "version": sys.version.split()[0],
        "mimetype": "text/x-python",
        "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
        "pygments_lexer": "ipython3",
        "nbconvert_exporter": "python",
        "file_extension": ".py",
    }
    # ipykernel sleeps before each execute_reply so its OutStream's last flush goes first; here the
    # relay has published the cell's outputs before do_execute returns: the reply waits for nothing.
    _execute_sleep = Float(0.0).tag(config=True)
    help_links = [
        {"text": "Python Reference", "url": f"https://docs.python.org/{sys.version_info[0]}.{sys.version_info[1]}"},
        {"text": "IPython Reference", "url": "https://ipython.readthedocs.io/en/stable/"},
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for msg_type in ("comm_open", "comm_msg", "comm_close"):
            self.shell_handlers[msg_type] = self.comm_request
        self._sandbox: Any = None
        self._sandbox_lock = threading.Lock()
        self._closed = False
        self._running = 0
        self._interrupted = threading.Event()
        self._cell_operation: int | None = None  # the running cell's session operation: interrupts bind to it
        self._lost_reason: str | None = None
        self._prestarted = False
        self._prewarmed = False
        self._last_activity = time.monotonic()
        from ..widgets.integration import KernelEvidence

        self.evidence = KernelEvidence(self, widgets=self.monitor_widgets)
        #: the comm ids sandbox frames may use (not the kernel's own monitor widgets)
        self.comm_gate = CommGate(self.evidence.owns_comm)
        self._comm_deliveries = InOrder()  # frontend comm messages reach the sandbox in arrival order
        # The worker starts now, while the kernel app finishes its set-up and the frontend
        # connects: the options are known (traits), nothing else is needed.
        self._start_worker_soon()

    def record_sandbox_violation(self, record: dict[str, Any]) -> None:
        """A violation the kernel saw in the sandbox's frames (a forged comm): audit chain, banner, call."""
        sandbox = self._sandbox
        if sandbox is not None:
            sandbox.record_violation({"source": "kernel-relay", **record})

    # -- the sandbox ------------------------------------------------------------------------
    def sandbox_config(self) -> OSSandboxConfig:
        """The session's config from the kernel's traits (host side; see :mod:`.options`)."""
        return config_from_traits(self)

    def get_sandbox(self, *, start: bool = True) -> Any:
        """The kernel's OSSandbox, created (and started) on first use (blocking; call off the event loop)."""
        with self._sandbox_lock:
            if self._closed:
                raise RuntimeError("the kernel is shutting down")
            if self._sandbox is None:  # the app's early start (same options), else a new one
                self._sandbox = take_sandbox(option_values(self))
            if self._sandbox is None:
                from ..sandbox import OSSandbox

                self._sandbox = OSSandbox(self.sandbox_config())
            sandbox = self._sandbox
        if start:
            sandbox.start()
        return sandbox

    def start(self) -> None:
        """Called by the kernel app: ipykernel's handlers, then the kernel's own comm layer; then the
        sandbox's start, waiting since ``__init__``, may begin (:func:`.prestart.go`): set-up is done."""
        super().start()
        self.evidence.start()
        self._start_worker_soon()
        trace("kernel: started")
        go()

    async def kernel_info_request(self, stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        """Reply first, then warm the sandbox: a frontend asks for kernel_info when it connects,
        so the worker starts while the user reads the notebook, without delaying "ready"."""
        await super().kernel_info_request(stream, ident, parent)
        trace("kernel_info: replied")
        self._start_sandbox_soon()

    @property
    def kernel_info(self) -> dict[str, Any]:
        """ipykernel's kernel_info without its debugger probe: no debugger here (code runs in the
        sandbox), and the probe imports debugpy, a third of a stock kernel's start, before the reply."""
        from ipykernel.kernelbase import kernel_protocol_version

        features = ["kernel subshells"] if getattr(self, "_supports_kernel_subshells", False) else []
        return {
            "protocol_version": kernel_protocol_version,
            "implementation": self.implementation,
            "implementation_version": self.implementation_version,
            "language_info": self.language_info,
            "banner": self.banner,
            "help_links": self.help_links,
            "supported_features": features,
        }

    # -- execute ------------------------------------------------------------------------------
    async def do_execute(  # type: ignore[override]
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool = False,
        *,
        cell_meta: dict[str, Any] | None = None,
        cell_id: str | None = None,
    ) -> dict[str, Any]:
        """Run one cell in the sandbox; the blocking part runs in a thread."""
        trace("execute: begin")
        parent = self.get_parent("shell")
        ident = self._get_shell_context_var(self._shell_parent_ident)
        relay = IOPubRelay(self, parent, self.execution_count)
        try:
            options, body = split_cell_options(code)
        except CellOptionsError as exc:
            text = str(exc)
            content = relay.error("UsageError", text.splitlines()[0], [f"UsageError: {text}"])
            return self._error_reply(content)
        self._allow_stdin = bool(allow_stdin)
        self._interrupted.clear()
        self._running += 1
        self._last_activity = time.monotonic()
        try:
            content = await asyncio.to_thread(
                self._execute_blocking,
                body,
                options,
                relay,
                silent,
                store_history,
                user_expressions or {},
                bool(allow_stdin),
                parent,
                ident,
            )
        except Exception as exc:  # noqa: BLE001 - the kernel always answers
            log.exception("the kernel could not finish a cell")
            content = self._error_reply(
                relay.error("SandboxKernelError", f"the kernel could not finish this cell: {type(exc).__name__}: {exc}")
            )
        finally:
            self._running -= 1
            self._last_activity = time.monotonic()
        trace("execute: end")
        return self._sendable(content, relay)

    def _sendable(self, content: dict[str, Any], relay: IOPubRelay) -> dict[str, Any]:
        """The execute_reply content as JSON that always serializes; replacements are noted.

        Whatever a cell put in its payloads, user_expressions or outputs, the
        reply goes out (a reply that cannot be sent leaves the frontend waiting).
        The cell's pending stream text is published first.
        """
        relay.flush()
        safe = json_safe(content, 0, relay.replaced)
        try:
            if self.session is not None:
                self.session.pack(safe)
        except Exception:  # noqa: BLE001 - the last resort: an error reply that certainly packs
            log.exception("execute_reply still did not serialize")
            safe = self._error_reply(
                {"ename": "SandboxKernelError", "evalue": "the cell's reply could not be serialized", "traceback": []}
            )
        relay.note_replacements()
        return safe  # type: ignore[no-any-return]

    def _error_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        error = {k: content[k] for k in ("ename", "evalue", "traceback")}
        return {
            "status": "error",
            "execution_count": self.execution_count,
            **error,
            "user_expressions": {},
            "payload": [],
        }

    def _execute_blocking(
        self,
        code: str,
        options: CellOptions | None,
        relay: IOPubRelay,
        silent: bool,
        store_history: bool,
        user_expressions: dict[str, Any],
        allow_stdin: bool,
        parent: dict[str, Any],
        ident: Any,
    ) -> dict[str, Any]:
        """Thread: run the cell and build the execute_reply content."""
        try:
            sandbox = self.get_sandbox_for_cell(relay, silent)
        except Exception as exc:  # noqa: BLE001 - e.g. BackendUnavailableError: an error reply, not a dead kernel
            return self._error_reply(relay.error(type(exc).__name__, str(exc)))
        options, capped = cap_to_session(options or CellOptions(), sandbox.config)
        capped += (
            [] if silent else take_start_notices(sandbox.config, sandbox.isolation_type)
        )  # e.g. why no project folder is shown
        generation = sandbox.session.generation
        self._cell_operation = op = sandbox.session.next_operation  # interrupts from here on: this cell's
        if self._interrupted.is_set():
            sandbox.interrupt(op)
        self.comm_gate.worker((id(sandbox.session), generation))

        def worker_gone() -> bool:  # killed during the cell (a fresh worker may already run: the prestart thread)
            return not sandbox.session.alive or sandbox.session.generation != generation

        limit = options.timeout if options.timeout is not None else sandbox.config.execution_timeout
        deadline: list[float] = []  # when the cell's time runs out (its clock starts just after on_start)

        def on_start() -> None:  # the kernel's own outputs go through mark_output: the record lists them
            if limit is not None:
                deadline.append(time.monotonic() + limit)
            for text in capped:
                relay.notice(text, mark=sandbox.mark_output)

        guard = CellLimitGuard(sandbox, options)
        relay.rewrite_error = lambda content, host: rewrite_error(
            content, guard, sandbox, options, host
        )  # relay thread

        def on_input(prompt: str, password: bool) -> str:
            return self._relay_input(prompt, password, parent, ident, deadline[0] if deadline else None)

        monitor = None
        if not silent:
            monitor = self.evidence.cell_monitor(
                send=relay.send,
                sandbox=sandbox,
                parent=parent,
                monitor=self.monitor,
                limits=self._limits(sandbox, options),
            )
            monitor.start()

        def on_output(frame: dict[str, Any]) -> dict[str, Any] | None:
            if monitor is not None:
                monitor.on_output(frame)
            return relay.output(frame)

        lost_noticed: list[bool] = []

        def before_seal(result: Any) -> None:  # the cell ended; its record is sealed after this
            if monitor is not None:
                monitor.finish(result)
            relay.note_replacements(mark=sandbox.mark_output)  # e.g. scripts removed: listed in the record
            if worker_gone():
                self._lost_reason = relay.last_error["ename"] if relay.last_error else "the worker died"
                relay.notice(
                    f"glsandbox: {self._lost_reason}: the sandbox worker was killed and its state is lost; "
                    "the next cell starts a fresh sandbox.\n",
                    mark=sandbox.mark_output,
                )
                lost_noticed.append(True)

        result = None
        try:
            with guard:
                result = sandbox.run_cell(
                    code,
                    on_output=on_output,
                    on_input=on_input if allow_stdin else None,
                    on_comm=relay.comm,
                    silent=silent,
                    store_history=store_history,
                    user_expressions=user_expressions,
                    timeout=options.timeout if options.timeout is not None else "config",
                    allow_stdin=allow_stdin,
                    on_start=on_start,
                    before_seal=before_seal,
                    record_extra=cell_binding(parent, silent, code),  # silent (and its code)? which cell?
                    judge=guard,  # the cell's limits: its record gives the verdict the relay shows
                )
        except Exception as exc:  # noqa: BLE001 - any sandbox trouble is an error reply
            log.warning("sandbox request failed", exc_info=True)
            return self._error_reply(relay.error(type(exc).__name__, str(exc)))
        finally:
            if monitor is not None:
                monitor.finish(result)
        if not lost_noticed and worker_gone():
            self._lost_reason = relay.last_error["ename"] if relay.last_error else "the worker died"
            relay.notice(
                f"glsandbox: {self._lost_reason}: the sandbox worker was killed and its state is lost; "
                "the next cell starts a fresh sandbox.\n"
            )
        if not silent:
            cell_id = (parent.get("metadata") or {}).get("cellId")
            self.evidence.emit_audit(
                relay.send,
                sandbox,
                result.audit_record,
                self.execution_count,
                cell_id=cell_id if isinstance(cell_id, str) else None,
            )
        if result.status != "ok":
            error = relay.last_error
            if error is None:  # e.g. an interrupt that IPython did not report
                error = relay.error(
                    result.error_name or "Error", result.error_value or "", as_lines(result.traceback) or None
                )
            return self._error_reply(error)
        return {
            "status": "ok",
            "execution_count": self.execution_count,
            "payload": safe_payload(result.payload, relay.replaced, ask_exit=result.ask_exit),
            "user_expressions": clean_user_expressions(
                as_dict(result.user_expressions, relay.replaced), relay.replaced
            ),
        }

    def _limits(self, sandbox: Any, options: CellOptions) -> dict[str, Any]:
        """The limits the monitor shows for this cell (the cell's own overrides win)."""
        from ..widgets.monitor import limits_of

        limits = limits_of(sandbox)
        if options.memory is not None:
            limits["memory"] = min(options.memory, limits["memory"] or options.memory)
        if options.timeout is not None:
            limits["timeout"] = options.timeout
        if options.cpu_time is not None:
            limits["cpu_time"] = options.cpu_time
        return limits

    def get_sandbox_for_cell(self, relay: IOPubRelay, silent: bool) -> Any:
        """The sandbox, with a "state lost" notice when its worker went away since the last cell."""
        sandbox = self.get_sandbox(start=False)
        session = sandbox.session
        if session.generation > 0 and not session.alive and not silent:
            reason = self._lost_reason or "it exited"
            relay.notice(_STATE_LOST_NOTICE.format(reason=reason))
        self._lost_reason = None
        sandbox.start()
        return sandbox

    # -- stdin ------------------------------------------------------------------------------------
    def _relay_input(
        self, prompt: str, password: bool, parent: dict[str, Any], ident: Any, deadline: float | None
    ) -> str:
        """Thread: an ``input_request`` on the stdin channel, until ``deadline`` (see :func:`.options.relay_input`)."""
        return relay_input(self, prompt, password, parent, ident, deadline)

    # -- interrupt / shutdown ------------------------------------------------------------------
    def _send_interrupt_children(self) -> None:
        """``Kernel.interrupt_request`` (control thread): interrupt the cell (never this process: no user code)."""
        self._interrupted.set()
        sandbox = self._sandbox
        if sandbox is not None:
            sandbox.interrupt(self._cell_operation if self._running else None)

    async def do_shutdown(self, restart: bool) -> dict[str, Any]:  # type: ignore[override]
        """Close the sandbox (the worker and everything it started) before the kernel exits."""
        await asyncio.to_thread(self.close_sandbox)
        # ipykernel flushes sys.stdout/err on the control thread after this, racing the IOPub thread's
        # stop (a lost race waits 10 s; we are SIGTERMed at 2.5 s); nothing of the user's is printed here.
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "flush_timeout"):
                stream.flush_timeout = 0.05
        return {"status": "ok", "restart": restart}

    def close_sandbox(self) -> None:
        """Stop the worker tree now; a running cell is killed rather than waited for."""
        with self._sandbox_lock:
            self._closed = True
            sandbox, self._sandbox = self._sandbox, None
        self._interrupted.set()
        if sandbox is None:
            take_sandbox({})  # started early and never taken: closed there
            return
        if self._running:
            sandbox.session.kill()
        try:
            sandbox.close()
        except Exception:  # noqa: BLE001 - shutdown must go on
            log.warning("error while closing the sandbox", exc_info=True)

    # -- usage (jupyter-resource-usage) ---------------------------------------------------------
    async def usage_request(self, stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        """Control handler: the sandbox's CPU and memory (measured outside it), not this process's."""
        if self.session is None:
            return
        content = await asyncio.to_thread(self.evidence.usage, self._sandbox)
        self.session.send(stream, "usage_reply", content, parent, ident)


__all__ = ["SandboxKernel"]
