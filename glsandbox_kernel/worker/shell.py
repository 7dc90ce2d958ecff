"""Notebook cells inside the worker: an IPython shell that speaks frames (sandbox side).

:class:`CellShell` is created on the first cell-like request. It runs cells
in an IPython ``InteractiveShell`` whose display hook, display publisher,
traceback display, pager, ``input()``/``getpass()`` and ``comm`` hooks send
frames to the host instead of printing. The host relays them to Jupyter.
"""

from __future__ import annotations

import builtins
import getpass
import os
import select
import signal
import sys
from typing import TYPE_CHECKING, Any

from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.tokenutil import token_at_cursor

from ..exceptions import SandboxStopped
from .common import INTERRUPT_SIGNALS, drop_pending_interrupts, json_clean, user_traceback

if TYPE_CHECKING:
    from .loop import Worker

_SIGINT = INTERRUPT_SIGNALS


class FramePublisher(DisplayPublisher):
    """display()/update_display/clear_output → display_data/update_display_data/clear_output frames."""

    worker: Any = None

    def publish(  # type: ignore[override]
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: Any = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        self.worker.flush_streams()
        self.worker.conn.send(
            {
                "type": "update_display_data" if update else "display_data",
                "data": json_clean(data),
                "metadata": json_clean(metadata or {}),
                "transient": json_clean(transient or {}),
            }
        )

    def clear_output(self, wait: bool = False) -> None:
        self.worker.flush_streams()
        self.worker.conn.send({"type": "clear_output", "wait": bool(wait)})


class FrameDisplayHook(DisplayHook):
    """The last expression's value → an execute_result frame."""

    worker: Any = None
    _bundle: dict[str, Any] | None = None

    def start_displayhook(self) -> None:
        self._bundle = {"data": {}, "metadata": {}}

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict: dict[str, Any], md_dict: dict[str, Any] | None = None) -> None:
        if self._bundle is not None:
            self._bundle["data"] = json_clean(format_dict)
            self._bundle["metadata"] = json_clean(md_dict or {})

    def finish_displayhook(self) -> None:
        bundle, self._bundle = self._bundle, None
        self.worker.flush_streams()
        if bundle and bundle["data"]:
            self.worker.conn.send({"type": "execute_result", "execution_count": self.prompt_count, **bundle})


class SandboxShell(InteractiveShell):
    """InteractiveShell whose tracebacks go out as error frames."""

    worker: Any = None
    _last_error: dict[str, Any] | None = None
    _asked_exit = False

    def _get_exc_info(self, exc_tuple: Any = None) -> tuple[Any, Any, Any]:
        """IPython's, with the worker's own frames cut from the traceback's ends (an interrupt's handler)."""
        etype, value, tb = super()._get_exc_info(exc_tuple)
        tb = user_traceback(tb)
        if isinstance(value, SandboxStopped):  # the host says what was refused: the cell's frames suffice
            tb = self._up_to_the_cell(tb)
        return etype, value, tb

    def _up_to_the_cell(self, tb: Any) -> Any:
        """``tb`` cut after its innermost frame of a cell (unchanged when it has none).

        A stop (enforcing mode) often comes deep inside a library's import; IPython's formatting of
        every library frame (``stack_data`` parses each module) took longer than the host's grace
        (2 s for ``import matplotlib.pyplot``), so a stopped cell's worker was killed, its state lost.
        """
        last, cur = None, tb
        while cur is not None:
            if self.compile.format_code_name(cur.tb_frame.f_code.co_filename) is not None:
                last = cur
            cur = cur.tb_next
        if last is not None:
            last.tb_next = None
        return tb

    def _showtraceback(self, etype: Any, evalue: Any, stb: list[str]) -> None:
        self.worker.flush_streams()
        content = {"ename": str(etype.__name__), "evalue": str(evalue), "traceback": list(stb)}
        self._last_error = content
        self.worker.conn.send({"type": "error", **content})

    def enable_gui(self, gui: Any = None) -> None:
        pass

    def system_piped(self, cmd: str) -> None:
        """``!cmd`` through a pty as in IPython; where the sandbox has none (BASIC: the host's
        ptys are not granted), through pipes, so the command still runs and prints."""
        try:
            super().system_piped(cmd)
        except OSError as exc:
            if "pty" not in str(exc):
                raise
            self.system_raw(cmd)

    system = system_piped

    def ask_exit(self) -> None:
        """``exit``/``quit``: the cell reply's ``ask_exit`` flag; the host writes the frontend's payload
        (it relays no payload of the sandbox's own that closes the frontend). The worker goes on."""
        self._asked_exit = True


class CellShell:
    """Handles cell, complete, inspect, is_complete, history and comm requests."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        FramePublisher.worker = worker
        FrameDisplayHook.worker = worker
        SandboxShell.worker = worker
        from traitlets.config import Config

        cfg = Config()
        cfg.HistoryManager.hist_file = ":memory:"
        cfg.InteractiveShell.colors = "nocolor" if os.environ.get("NO_COLOR") else "linux"
        self.shell = SandboxShell.instance(
            config=cfg,
            display_pub_class=FramePublisher,
            displayhook_class=FrameDisplayHook,
            user_module=None,
        )
        self.shell.display_pub.shell = self.shell
        self._install_pager()
        self._stdin_allowed = False
        #: answers the host still owes to this worker's input requests (more than one: the
        #: earlier ones' waits were interrupted, and their answers are dropped when they come)
        self._owed = 0
        self._orig_input = builtins.input
        builtins.input = self._input  # type: ignore[assignment]
        getpass.getpass = self._getpass  # type: ignore[assignment]
        from . import comms

        self.comms = comms.install(worker)

    def _install_pager(self) -> None:
        from IPython.core import page, payloadpage

        self.shell.set_hook("show_in_pager", page.as_hook(payloadpage.page), 99)

    # -- stdin ------------------------------------------------------------------
    def _request_input(self, prompt: str, password: bool) -> str:
        """Ask the host for a line; an interrupt while waiting raises KeyboardInterrupt here, as in ipykernel.

        The frames go out and come in with the interrupts blocked (a KeyboardInterrupt must not
        tear a frame, nor come from the send after the request went out); the wait between them
        is a poll with the interrupts let through. The host answers every request it read, also
        one interrupted here: that answer comes later and is dropped (here, or by the loop between
        requests: :meth:`drop_stale_reply`), so an answer is taken only by the request it answers.
        """
        if not self._stdin_allowed:
            raise StdinNotImplementedError("input() is not supported by this frontend")
        self.worker.flush_streams()
        conn = self.worker.conn
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGINT)
        try:
            self._owed += 1
            conn.send({"type": "input_request", "prompt": str(prompt), "password": password})
            chan = conn.chan
            while True:
                # Bytes the channel read already (a frame that came with the last one) need no wait.
                if not chan._buf and chan._big is None:
                    self._wait_readable(chan.sock)
                msg = conn.recv()
                kind = msg.get("type")
                if kind == "input_reply":
                    self._owed = max(0, self._owed - 1)
                    if self._owed:  # the answer to an input() interrupted before it came
                        continue
                    break
                if kind in ("comm_msg", "comm_open", "comm_close"):
                    self.comms.handle(msg)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGINT)  # one that came while reading: raised here
        value = msg.get("value")
        if value is None:
            raise KeyboardInterrupt("input was interrupted")
        return str(value)

    def _wait_readable(self, sock: Any) -> None:
        """Until a frame comes, with the interrupts let through: one raises KeyboardInterrupt from the poll."""
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGINT)
        try:
            poller.poll()
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGINT)

    def drop_stale_reply(self) -> None:
        """The loop read an ``input_reply`` between requests: the late answer to an interrupted input()."""
        self._owed = max(0, self._owed - 1)

    def _input(self, prompt: object = "") -> str:
        return self._request_input(str(prompt), False)

    def _getpass(self, prompt: str = "Password: ", stream: Any = None) -> str:
        return self._request_input(prompt, True)

    # -- requests ---------------------------------------------------------------
    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        kind = msg["type"]
        handler = getattr(self, f"do_{kind}", None)
        if handler is None:
            return {"type": "error_reply", "id": msg.get("id"), "error": f"unknown request {kind!r}"}
        reply: dict[str, Any] = handler(msg)
        reply["id"] = msg.get("id")
        return reply

    def do_cell(self, msg: dict[str, Any]) -> dict[str, Any]:
        shell = self.shell
        shell._last_error, shell._asked_exit = None, False
        self._stdin_allowed = bool(msg.get("allow_stdin"))
        self._owed = 0  # the host answered every earlier request before it sent this one: all read
        drop_pending_interrupts()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGINT)
        try:
            result = shell.run_cell(
                msg["code"], store_history=bool(msg.get("store_history", True)), silent=bool(msg.get("silent"))
            )
        except KeyboardInterrupt:
            result = None
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGINT)
            self._stdin_allowed = False
        self.worker.flush_streams()
        reply: dict[str, Any] = {
            "type": "cell_reply",
            "execution_count": shell.execution_count - 1
            if msg.get("store_history", True) and not msg.get("silent")
            else shell.execution_count,
        }
        err = shell._last_error
        if result is None:
            reply.update(status="error", ename="KeyboardInterrupt", evalue="", traceback=[])
        elif err is not None or not result.success:
            err = err or {"ename": "Error", "evalue": "", "traceback": []}
            reply.update(status="error", **err)
        else:
            reply["status"] = "ok"
        reply["user_expressions"] = json_clean(shell.user_expressions(msg.get("user_expressions") or {}))
        payloads: Any = shell.payload_manager
        reply["payload"] = json_clean(payloads.read_payload())
        reply["ask_exit"] = shell._asked_exit is True
        payloads.clear_payload()
        return reply

    def do_complete(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Completions from IPython's (jedi) completer, as ipykernel's default path does."""
        from IPython.core.completer import provisionalcompleter, rectify_completions

        code = msg.get("code", "")
        cursor_pos = msg.get("cursor_pos")
        if cursor_pos is None:
            cursor_pos = len(code)
        with provisionalcompleter():
            completions = list(rectify_completions(code, self.shell.Completer.completions(code, cursor_pos)))
        if completions:
            start, end = completions[0].start, completions[0].end
        else:
            start = end = cursor_pos
        meta = [
            {"start": c.start, "end": c.end, "text": c.text, "type": c.type, "signature": c.signature}
            for c in completions
        ]
        return {
            "type": "complete_reply",
            "status": "ok",
            "matches": [c.text for c in completions],
            "cursor_start": start,
            "cursor_end": end,
            "metadata": {"_jupyter_types_experimental": meta},
        }

    def do_inspect(self, msg: dict[str, Any]) -> dict[str, Any]:
        code = msg.get("code", "")
        name = token_at_cursor(code, msg.get("cursor_pos", len(code)))
        reply: dict[str, Any] = {"type": "inspect_reply", "status": "ok", "data": {}, "metadata": {}, "found": False}
        try:
            bundle = self.shell.object_inspect_mime(name, detail_level=int(msg.get("detail_level", 0)))
            bundle.pop("text/html", None)
            reply["data"] = json_clean(bundle)
            reply["found"] = True
        except KeyError:
            pass
        return reply

    def do_is_complete(self, msg: dict[str, Any]) -> dict[str, Any]:
        status, indent = self.shell.input_transformer_manager.check_complete(msg.get("code", ""))
        reply = {"type": "is_complete_reply", "status": status}
        if status == "incomplete":
            reply["indent"] = " " * (indent or 0)
        return reply

    def do_history(self, msg: dict[str, Any]) -> dict[str, Any]:
        hm: Any = self.shell.history_manager
        kind = msg.get("hist_access_type", "tail")
        raw, output = bool(msg.get("raw", True)), bool(msg.get("output", False))
        if kind == "tail":
            hist = hm.get_tail(msg.get("n") or 10, raw=raw, output=output, include_latest=True)
        elif kind == "range":
            hist = hm.get_range(msg.get("session", 0), msg.get("start", 0), msg.get("stop"), raw=raw, output=output)
            # IPython numbers the current session 0 here but by its number in tail/search.
            hist = [(hm.session_number if s == 0 else s, n, line) for s, n, line in hist]
        elif kind == "search":
            hist = hm.search(
                msg.get("pattern", "*"), raw=raw, output=output, n=msg.get("n"), unique=bool(msg.get("unique"))
            )
        else:
            hist = []
        return {"type": "history_reply", "status": "ok", "history": json_clean([list(h) for h in hist])}

    def do_comm_open(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self._comm(msg)

    def do_comm_msg(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self._comm(msg)

    def do_comm_close(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self._comm(msg)

    def do_comm_info(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"type": "comm_info_reply", "comms": self.comms.info(msg.get("target_name"))}

    _saved_limits: dict[str, int] | None = None

    def do_set_limits(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Per-cell soft rlimits asked by the host kernel (``%%sandbox --memory/--cpu-time``).

        ``memory``: the cell may add at most the headroom up to that many bytes
        (soft RLIMIT_AS = address space now + limit - resident now);
        ``cpu_time``: soft RLIMIT_CPU = CPU used so far + limit. ``None``
        restores the value from before. Only soft limits move, never above
        the hard limit or the session's own soft limit; the host enforces
        the same limits from outside, so undoing them here gains nothing.
        """
        import resource

        saved = self._saved_limits if self._saved_limits is not None else {}
        self._saved_limits = saved
        applied: dict[str, int] = {}
        for key, res in (("memory", resource.RLIMIT_AS), ("cpu_time", resource.RLIMIT_CPU)):
            if key not in msg:
                continue
            soft, hard = resource.getrlimit(res)
            base = saved.setdefault(key, soft)
            value = msg[key]
            if value is None:
                target = base
                del saved[key]
            elif key == "memory":
                page = os.sysconf("SC_PAGE_SIZE")
                with open("/proc/self/statm", "rb") as fh:
                    size, resident = (int(x) * page for x in fh.read().split()[:2])
                target = size + max(0, int(value) - resident)
            else:
                usage = resource.getrusage(resource.RUSAGE_SELF)
                target = int(usage.ru_utime + usage.ru_stime + float(value)) + 1
            for cap in (hard, base):
                if cap != resource.RLIM_INFINITY and target > cap:
                    target = cap
            resource.setrlimit(res, (target, hard))
            applied[key] = target
        return {"type": "set_limits_reply", "applied": applied}

    def _comm(self, msg: dict[str, Any]) -> dict[str, Any]:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGINT)
        try:
            self.comms.handle(msg)
        except Exception as exc:  # noqa: BLE001 - a widget callback error is reported, not fatal
            print(f"error in comm handler: {exc!r}", file=sys.stderr)
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGINT)
        return {"type": "comm_done"}


class StdinNotImplementedError(RuntimeError):
    """input() was called where the frontend does not accept input."""
