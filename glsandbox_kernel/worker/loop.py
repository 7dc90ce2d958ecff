"""The worker's request loop (sandbox side).

:func:`serve` sends a hello frame, then answers requests until ``shutdown``:

- ``call``: a cloudpickled function and arguments (trusted sender: the host);
  the result goes back through the restricted codec, so only allowlisted
  types can leave. Exceptions go back as name, value and formatted traceback.
- ``cell`` / ``complete`` / ``inspect`` / ``is_complete`` / ``history`` /
  ``comm_*``: handled by :mod:`glsandbox_kernel.worker.shell` (IPython is
  imported only on the first such request, so function-only sessions stay small).

An interrupt (SIGINT, or the stop signal of enforcing mode) never tears a
frame: its handlers raise only while user code runs (``_QUIET[0]`` False:
around a call's function, and around a shell request, which blocks the
signals itself during its own frame I/O); one that arrives while the loop
reads or writes frames is dropped, as one that came while idle. The signal
mask stays as it is across calls: no system call per call for it. Once user
code installs a handler of its own (which would not drop them), the signals
are blocked outside user code instead, as they were before each request.
"""

from __future__ import annotations

import _signal
import builtins
import os
import pickle
import select
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from .. import codec_fast
from ..codec import UnsupportedType
from ..exceptions import FrameTooLarge, SandboxStopped
from ..protocol import STOP_SIGNAL, WorkerGone
from . import fontprobe
from .common import HELD, INTERRUPT_SIGNALS, drop_pending_interrupts, raise_held, user_traceback
from .streams import Connection, FdForwarder, StreamWriter

#: ``signal.pthread_sigmask`` without its conversion of the old mask to enum members (Python
#: code each worker would run for the first time after the fork, writing the template's pages)
_sigmask = _signal.pthread_sigmask
#: the signals that reach user code only while it runs (dropped during frame I/O)
_SIGINT = INTERRUPT_SIGNALS
#: ``[True]`` while the loop does its own work (frame I/O, decoding): interrupts are dropped then
_QUIET = [True]
#: cloudpickle.loads is pickle.loads (cloudpickle imports when a pickle names it); bound once, as an
#: ``import`` statement in handle_call cost each warm call an import lookup (emulated, under TCG)
_loads = pickle.loads
#: most functions the worker keeps by the host's reference (the host clears at 64 and says so)
_MAX_FN_REFS = 256


def _stop_handler(signum: int, frame: Any) -> None:
    """SANDBOX side: the host stopped the running call (a violation, enforcing mode)."""
    if not _QUIET[0]:
        raise SandboxStopped("stopped by the host: this code tried a forbidden operation (enforcing mode)")


def _interrupt_handler(signum: int, frame: Any) -> None:
    """SANDBOX side: SIGINT from the host interrupts user code; between requests it is dropped, and
    after a request was read, until its user code starts, held for it (``HELD``)."""
    if not _QUIET[0]:
        raise KeyboardInterrupt
    if HELD[0] is not None:
        HELD[0] = True


def _settle_handlers() -> None:
    """Nothing: entering a Python function runs the signal handlers still due (CPython checks at
    each function's start), so a SIGINT sent before the request that was just read is dropped here."""


class Worker:
    """State of one worker: connection, streams, function cache, the lazy shell."""

    def __init__(self, sock: socket.socket) -> None:
        self.conn = Connection(sock)
        self.writers = {"stdout": StreamWriter(self.conn, "stdout"), "stderr": StreamWriter(self.conn, "stderr")}
        self.writers["stdout"].other = self.writers["stderr"]
        self.writers["stderr"].other = self.writers["stdout"]
        self._out_err = (self.writers["stdout"], self.writers["stderr"])
        self.forwarder: FdForwarder | None = None
        self._fn_cache: dict[bytes, Any] = {}
        #: functions by the host's reference (``fn_ref``): sent once, then named by number
        self._fn_refs: dict[int, Any] = {}
        #: the interrupts are blocked outside user code (a handler of the user's own is installed)
        self._masked = False
        self._shell: Any = None

    def flush_streams(self) -> None:
        """Send what was printed before a reply: when nothing was, the forwarder's one poll(0) and two
        attribute tests, no iterator (each costs an emulated guest's every warm call)."""
        if self.forwarder is not None:
            self.forwarder.drain_all()  # its own poll(0) decides whether a subprocess wrote
        out, err = self._out_err
        if out._parts:  # what this thread printed is there; nothing printed: no lock taken
            out.flush()
        if err._parts:
            err.flush()

    @property
    def shell(self) -> Any:
        if self._shell is None:
            from .shell import CellShell

            self._shell = CellShell(self)
        return self._shell

    # -- requests ----------------------------------------------------------
    def handle_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            fn = self._function(msg)
            # Out-of-band pickle-5 buffers (numpy data) are views of the received frame: no copy.
            args, kwargs = _loads(msg["args"], buffers=msg.get("buffers") or ()) if msg.get("args") else ((), {})
            _QUIET[0] = False
            try:
                if self._masked:  # what is pending came after the request was read: it is for this call
                    _sigmask(signal.SIG_UNBLOCK, _SIGINT)
                raise_held()
                value = fn(*args, **kwargs)
            finally:
                self._settle_signals()
        except BaseException as exc:  # noqa: BLE001 - every user error becomes a reply
            if isinstance(exc, SystemExit) and msg.get("script"):
                code = exc.code
                return {
                    "type": "result",
                    "id": msg["id"],
                    "ok": True,
                    "value": code if isinstance(code, (int, str)) or code is None else str(code),
                }
            return error_reply(msg["id"], exc)
        return {"type": "result", "id": msg["id"], "ok": True, "value": value}

    def _function(self, msg: dict[str, Any]) -> Any:
        """The call's function: unpickled from ``fn`` (cached by its bytes), or the one the host
        defined earlier as ``fn_ref`` (the host numbers them; ``fn_reset`` forgets the others)."""
        ref = msg.get("fn_ref")
        if msg.get("fn_reset"):
            self._fn_refs.clear()
        fn_bytes = msg.get("fn")
        if fn_bytes is None:
            fn = self._fn_refs.get(ref) if type(ref) is int else None
            if fn is None:
                raise LookupError(f"the host named function reference {ref!r}, which this worker does not hold")
            return fn
        fn = self._fn_cache.get(fn_bytes)
        if fn is None:
            from .unpickle_lite import loads  # not on a warm call's path: the function is held already

            fn = loads(fn_bytes)
            # A @sandboxed function pickled by reference resolves to its wrapper.
            while getattr(fn, "__wrapped_sandboxed__", False):
                fn = fn.__wrapped__
            if len(self._fn_cache) > 64:
                self._fn_cache.clear()
            self._fn_cache[fn_bytes] = fn
        if type(ref) is int:
            if len(self._fn_refs) >= _MAX_FN_REFS:
                self._fn_refs.clear()
            self._fn_refs[ref] = fn
        return fn

    def run(self) -> NoReturn:
        """Main loop; returns only by exiting the process."""
        conn = self.conn
        # From here on the interrupt signals stay unblocked; their handlers drop them while _QUIET.
        _sigmask(signal.SIG_UNBLOCK, _SIGINT)
        _preload_when_idle(conn.chan.sock)
        # The channel's own recv, not Connection.recv's wrapper: a Python frame less per request
        # (an emulated guest's every warm call). Without a timeout it returns a frame or raises.
        recv: Callable[[], dict[str, Any]] = conn.chan.recv  # type: ignore[assignment]
        while True:
            HELD[0] = None  # between requests: an interrupt is for an earlier one (dropped)
            try:
                msg = recv()
            except (WorkerGone, OSError):
                os._exit(0)
            except MemoryError as exc:
                # A request larger than this sandbox's memory: say so (the channel skipped the
                # frame or read it whole), keep the worker and its state.
                conn.send(
                    {
                        "type": "request_failed",
                        "memory_error": True,
                        "evalue": f"the request did not fit in the sandbox's memory: {exc}",
                    }
                )
                continue
            # The host sends a request's SIGINT only after the request, and never once it read the
            # reply: one still due now was sent before this request, and is dropped. From here on
            # one is held for this request until its user code runs.
            _settle_handlers()
            if self._masked:
                drop_pending_interrupts()
            HELD[0] = False
            cap = msg.get("max_reply")
            if type(cap) is int and cap > 0:  # what the host accepts: a larger reply is a MemoryError here
                conn.chan.max_send = cap
            kind = msg["type"]
            if kind == "call":
                reply = self.handle_call(msg)
            elif kind == "shutdown":
                self.flush_streams()
                os._exit(0)
            elif kind == "ping":
                reply = {"type": "pong", "id": msg.get("id")}
            elif kind == "input_reply":  # the late answer to an input() an interrupt ended: dropped
                if self._shell is not None:
                    self._shell.drop_stale_reply()
                continue
            else:
                reply = self._shell_request(msg)
            self.flush_streams()
            try:
                conn.send(reply)
            except FrameTooLarge:  # larger than the host accepts (max_reply): the host names its cap
                conn.send(
                    {
                        "type": reply.get("type", "result"),
                        "id": msg.get("id"),
                        "ok": False,
                        "status": "error",
                        "ename": "MemoryError",
                        "evalue": "reply over the host's cap",
                        "traceback": [],
                        "builtin": True,
                        "memory_error": True,
                        "over_cap": True,
                    }
                )
            except MemoryError:
                reply = {"type": reply.get("type", "result"), "id": msg.get("id")}
                conn.send(
                    {
                        **reply,
                        "ok": False,
                        "status": "error",
                        "ename": "MemoryError",
                        "evalue": "the result did not fit in the sandbox's memory while it was encoded",
                        "traceback": [],
                        "builtin": True,
                        "memory_error": True,
                    }
                )
            except (UnsupportedType, RecursionError) as exc:
                # The reply's own type, so the host stops waiting; what could not leave is named.
                what = exc.typename if isinstance(exc, UnsupportedType) else "nesting too deep"
                conn.send(
                    {
                        "type": reply.get("type", "result"),
                        "id": msg.get("id"),
                        "ok": False,
                        "refused": what,
                        "status": "error",
                        "ename": "UnsupportedType",
                        "evalue": f"the reply could not leave the sandbox: {what}",
                        "traceback": [],
                    }
                )

    def _shell_request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A cell or another shell request: the shell unblocks the interrupts itself where user code runs."""
        _sigmask(signal.SIG_BLOCK, _SIGINT)
        _QUIET[0] = False
        try:
            reply: dict[str, Any] = self.shell.handle(msg)
        finally:
            self._settle_signals(blocked=True)
        return reply

    def _settle_signals(self, *, blocked: bool = False) -> None:
        """After user code ran: interrupts are dropped again, and blocked (as before each request)
        for good once user code set a SIGINT or stop handler of its own, which would not drop them."""
        _QUIET[0] = True
        # _signal's getsignal, not signal's: that one maps the handler to an enum member by
        # raising ValueError for a function (12 us a call here, 0.3 ms in an emulated guest).
        if not self._masked and (
            _signal.getsignal(signal.SIGINT) is not _interrupt_handler
            or _signal.getsignal(STOP_SIGNAL) is not _stop_handler
        ):
            self._masked = True
        if self._masked:
            if not blocked:
                _sigmask(signal.SIG_BLOCK, _SIGINT)
        elif blocked:
            _sigmask(signal.SIG_UNBLOCK, _SIGINT)  # one still pending is dropped here


def _preload_when_idle(sock: socket.socket, idle: float = 0.05) -> None:
    """Import cloudpickle and traceback if no request comes within ``idle`` s of the hello (SANDBOX side).

    A fresh sandbox's first call comes right away and needs none of it
    (:mod:`.unpickle_lite`); a pooled worker waits for its session, and
    imports it then, so a call that does need it (a class by value) does not pay.
    """
    if "cloudpickle" in sys.modules and "traceback" in sys.modules:
        return
    try:
        ready, _, _ = select.select([sock], [], [], idle)
    except (OSError, ValueError):
        return
    if not ready:
        import traceback  # noqa: F401 - error_reply's, ready before memory may be short

        try:
            import cloudpickle  # noqa: F401
        except ImportError:
            pass


def error_reply(req_id: Any, exc: BaseException) -> dict[str, Any]:
    """An error result for ``exc`` raised by user code."""
    import traceback  # not before the first error: a fresh sandbox's first reply needs none of it

    ename = type(exc).__name__
    builtin = getattr(builtins, ename, None) is type(exc)
    tb = traceback.format_exception(type(exc), exc, user_traceback(exc.__traceback__))
    try:
        evalue = str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not kill the loop
        evalue = "<unprintable>"
    return {
        "type": "result",
        "id": req_id,
        "ok": False,
        "ename": ename,
        "evalue": evalue,
        "traceback": tb,
        "builtin": builtin,
        "memory_error": isinstance(exc, MemoryError),
    }


def serve(
    sock: socket.socket,
    *,
    pass_fds: list[int] | None = None,
    report: dict[str, Any] | None = None,
    file_limit: tuple[int, int] | None = None,
) -> NoReturn:
    """Run the worker on ``sock``: hello (with ``pass_fds`` attached), then the loop.

    ``pass_fds`` (e.g. the seccomp listener) are closed here right after they
    are sent, before any user code can run; then RLIMIT_NOFILE is lowered to
    ``file_limit`` (the plan's, deferred past the hello: see :mod:`glsandbox_kernel.confinement.rlimits`).
    """
    _sigmask(signal.SIG_BLOCK, _SIGINT)  # threads started from here on keep them blocked
    fontprobe.install()  # before any user code: matplotlib's fc-list where no program may start
    signal.signal(signal.SIGINT, _interrupt_handler)
    signal.signal(STOP_SIGNAL, _stop_handler)
    worker = Worker(sock)
    # The worker's own thread starts before the hello: a hello means the worker is ready.
    forwarder = FdForwarder(worker.conn, worker.writers)
    forwarder.launch()
    worker.forwarder = forwarder
    hello = {
        "type": "hello",
        "pid": os.getpid(),
        "python": list(sys.version_info[:3]),
        "report": report or {},
        # requests may come as MessagePack (codec_fast): this worker reads them and replies in kind
        "codecs": ["msgpack"] if codec_fast.AVAILABLE else [],
    }
    worker.conn.chan.send_with_fds(hello, list(pass_fds or []))
    for fd in pass_fds or []:
        os.close(fd)
    if file_limit is not None:
        # resource, not confinement._common's lower_file_limit: that module imports dataclasses (with
        # inspect, ast, dis, tokenize), ~30 ms of a fresh gVisor sandbox's first call; an error ends
        # the worker here either way, before any request.
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, file_limit)
    sys.stdout = worker.writers["stdout"]
    sys.stderr = worker.writers["stderr"]
    worker.run()
