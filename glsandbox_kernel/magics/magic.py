"""``%%sandbox`` and ``%sandbox``: run chosen cells of any IPython kernel in a sandbox (host side).

The cell magic sends its cell to a named, persistent
:class:`~glsandbox_kernel.sandbox.OSSandbox` session and shows what the
sandbox produced through IPython's own display machinery, so it looks as if
the cell ran locally: streams go to ``sys.stdout``/``sys.stderr``, rich
outputs through ``publish_display_data``, the last expression's value
becomes the cell's result, and an error in the sandbox fails the cell with
the sandbox's traceback (same exception name and message, shown by a custom
exception handler instead of a host traceback).

Only values named by ``--out`` come back as objects, decoded by the
restricted codec; everything else the sandbox sends is shown as output and
never evaluated here. Ctrl-C (SIGINT to this kernel, or an interrupt
request) interrupts the sandboxed cell.

Who calls: IPython, after ``%load_ext glsandbox_kernel``. Named sessions live
in :mod:`.sessions`, variable transfer in :mod:`.transfer`, the local look of
errors and outputs in :mod:`.display`.
"""

from __future__ import annotations

import atexit
import builtins
import datetime
import itertools
import logging
import os
import signal
import sys
import threading
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import MagicArgumentParser, argument, magic_arguments, parse_argstring

from ..active_content import clean_frame
from ..config import IsolationType, SecurityLevel, parse_size
from ..exceptions import SandboxConfigError, SandboxError, SandboxSecurityError
from ..kernel.relay import as_dict
from ..outputs import NOT_SHOWN
from ..terminal_text import printable
from .display import (
    CellDisplays,
    SandboxResult,
    install_error_display,
    prints_to_terminal,
    sandbox_error,
    show_output,
    terminal_frame,
)
from .host_path import drop_writable_from_path
from .notices import ProjectNotices, working_dir
from .sessions import DEFAULT_NAME, NamedSession, SessionRegistry, SessionSettings, lost_in_cell, worker_end
from .transfer import accept_out, encode_in

log = logging.getLogger("glsandbox.magic")

#: named in the cell's notice when showing a frame failed on the host (the frame is dropped)
DROPPED_FRAME = "an output frame the host could not show (dropped)"

LINE_HELP = """\
Line magic:

  %sandbox status            sessions, their settings, workers and cells run
  %sandbox stop [NAME]       close a session (every session without NAME)
  %sandbox restart [NAME]    give a session a fresh worker (its state is lost)
  %sandbox audit [NAME]      the audit records of a session, and whether the chain verifies
  %sandbox config [NAME]     the effective sandbox configuration of a session"""


# -- argument parsing -----------------------------------------------------------------------------


def _names(text: str | None, option: str) -> list[str]:
    if not text:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if not n.isidentifier():
            raise UsageError(f"{option}: {n!r} is not a variable name")
        if option == "--out" and (n.startswith("__") or n in vars(builtins)):
            # the host's own names: replacing __builtins__ (or a builtin) breaks every later host cell
            raise UsageError(f"--out: {n!r} is a name Python itself defines; copy the value out under another name")
    return names


def _settings_from(args: Any, cwd: str | None) -> SessionSettings:
    try:
        memory = parse_size(args.memory) if args.memory else None
        settings = SessionSettings(
            level=args.level or "moderate",
            isolation=args.isolation,
            timeout=args.timeout,
            memory=memory,
            cpu_time=args.cpu_time,
            network=args.network,
            monitor=not args.no_monitor,
            audit=os.path.abspath(os.path.expanduser(args.audit)) if args.audit else None,
            project=_project_from(args.project, cwd),
            readonly=tuple(os.path.realpath(os.path.expanduser(p)) for p in args.ro or ()),
        )
        settings.config()  # validate now, with the field named
    except SandboxConfigError as exc:
        raise UsageError(str(exc)) from None
    for name, value in (("--timeout", args.timeout), ("--cpu-time", args.cpu_time)):
        if value is not None and not value > 0:
            raise UsageError(f"{name} must be > 0 seconds")
    return settings


def _project_from(option: str | None, cwd: str | None) -> str | None:
    """``--project DIR``, else the working directory ``cwd`` when it can be a project folder."""
    from ..project import default_project_dir

    if option:
        return os.path.realpath(os.path.expanduser(option))
    return default_project_dir(cwd) if cwd is not None else None


_LINE_PARSER = MagicArgumentParser(prog="%sandbox", add_help=False)
_LINE_PARSER.add_argument("command", choices=["status", "stop", "restart", "audit", "config"])
_LINE_PARSER.add_argument("name", nargs="?")


@magics_class
class SandboxMagics(Magics):
    """``%%sandbox`` (cell) and ``%sandbox`` (line); sessions live in :attr:`registry`."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.registry = SessionRegistry()
        self._arg_cache: dict[tuple[str, str | None], Any] = {}
        self._lost: dict[str, str] = {}
        self._cells = itertools.count(1)  # the display scope of each sandboxed cell
        self._project_notices = ProjectNotices(shell)
        self._saved_exc = install_error_display(shell) if shell is not None else None
        atexit.register(self.registry.close_all)

    def close(self) -> None:
        """Close every session and undo what loading did (``%unload_ext``)."""
        self.registry.close_all()
        atexit.unregister(self.registry.close_all)
        if self._saved_exc is not None and self.shell is not None:
            types, previous = self._saved_exc
            self.shell.custom_exceptions = types
            self.shell.CustomTB = previous
            self._saved_exc = None

    @magic_arguments()
    @argument(
        "level",
        nargs="?",
        choices=[lvl.value for lvl in SecurityLevel],
        help="security level preset (default moderate)",
    )
    @argument(
        "--isolation",
        choices=[i.value for i in IsolationType],
        help="isolation backend (default: the strongest available without a daemon)",
    )
    @argument("--timeout", type=float, help="wall-clock limit per cell, seconds")
    @argument("--memory", help="memory limit, e.g. 200M or 1G")
    @argument("--cpu-time", dest="cpu_time", type=float, help="CPU time limit, seconds")
    @argument("--network", help="none, any, or an allowlist HOST:PORT,HOST:PORT")
    @argument("--name", default=DEFAULT_NAME, help="session name (default 'default'); state persists per name")
    @argument("--new", action="store_true", help="start the session afresh (its state is lost)")
    @argument("--in", dest="inputs", metavar="A,B", help="copy these host variables into the sandbox first")
    @argument("--out", dest="outputs", metavar="C,D", help="copy these sandbox variables back afterwards")
    @argument("--no-monitor", action="store_true", help="do not sample the sandbox's resource use")
    @argument("--audit", metavar="PATH", help="append the session's audit records to this JSONL file")
    @argument("--project", metavar="DIR", help="project folder (default: the current directory)")
    @argument("--ro", action="append", metavar="PATH", help="also show PATH read-only (repeatable)")
    @no_var_expand  # the line shown is the line that ran (its record holds it: extra.magic_line)
    @line_cell_magic
    def sandbox(self, line: str, cell: str | None = None) -> Any:
        """Run the cell in a persistent sandbox session.

        Cells with the same --name and the same settings share one session
        (variables persist); changing a setting starts a new session.
        Only --out values come back as objects.
        """
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    # -- cell magic -------------------------------------------------------------------------------
    def _parse(self, line: str, cwd: str | None) -> tuple[Any, SessionSettings]:
        """Arguments and settings of a ``%%sandbox`` line run in ``cwd`` (the default project; cached: a
        warm cell costs no argparse)."""
        cached = self._arg_cache.get((line, cwd))
        if cached is None:
            try:
                args = parse_argstring(self.sandbox, line)
            except UsageError as exc:
                raise UsageError(f"{exc}\n\n{self.sandbox.__doc__}") from None
            cached = (args, _settings_from(args, cwd))
            if len(self._arg_cache) > 256:
                self._arg_cache.clear()
            self._arg_cache[line, cwd] = cached
        return cached

    def _cell(self, line: str, cell: str) -> Any:
        cwd = working_dir()
        args, settings = self._parse(line, cwd)
        inputs, outputs = _names(args.inputs, "--in"), _names(args.outputs, "--out")
        user_ns = self.shell.user_ns if self.shell is not None else {}
        # Checked before the session is touched: a failed option leaves it as it was.
        values = encode_in(inputs, user_ns)
        try:
            session, notice = self.registry.get(args.name, settings, new=args.new)
        except SandboxError as exc:  # e.g. BackendUnavailableError: say why, no traceback
            raise UsageError(f"%%sandbox: {exc}") from None
        # Shown as the cell starts, as outputs its record lists (so verify knows them).
        # (no project folder: no --project, and the working directory cannot be one)
        no_project = self._project_notices.take(cwd) if settings.project is None else None
        notices = [n for n in (notice, no_project, session.path_notice, drop_writable_from_path(session.config)) if n]
        session.path_notice = None
        notices += self._notice_if_lost(session)
        if values:
            try:
                session.ensure_shell()
                self._call(session, "sandbox_side_set_names", values)
            except BaseException:
                if notices:  # the cell does not run: no record lists them
                    print("\n".join(notices), file=sys.stderr)
                raise
        try:
            result, value = self._run(session, cell, line, notices)
        except SandboxError as exc:  # the sandbox could not run the cell at all (e.g. backend set-up)
            raise sandbox_error(type(exc).__name__, str(exc), host=True) from None
        session.cells += 1
        if result.status == "error":
            tb = list(result.traceback or [])
            raise sandbox_error(result.error_name or "Error", result.error_value or "", tb, host=result.error_by_host)
        if outputs:
            self._copy_out(session, outputs)
        return value

    def _notice_if_lost(self, session: NamedSession) -> list[str]:
        sandbox_session = session.sandbox.session
        if sandbox_session.generation > 0 and not session.alive:
            how = self._lost.pop(session.name, None) or worker_end(sandbox_session.exit_status)
            session.shell_ready = False
            return [
                f"glsandbox: the worker of sandbox session {session.name!r} was {how}; "
                "variables from earlier cells are lost. This cell runs in a fresh sandbox."
            ]
        return []

    def _call(self, session: NamedSession, fn_name: str, arg: Any) -> Any:
        from . import sandbox_side

        try:
            return session.sandbox.execute(getattr(sandbox_side, fn_name), arg)
        except SandboxSecurityError:
            raise
        except SandboxError as exc:
            raise sandbox_error(type(exc).__name__, str(exc), host=True) from None
        except Exception as exc:  # noqa: BLE001 - user-side errors (NameError, pickling) shown like local ones
            tb = getattr(exc, "sandbox_traceback", None)
            raise sandbox_error(type(exc).__name__, str(exc), tb) from None

    def _copy_out(self, session: NamedSession, names: list[str]) -> None:
        """``--out``: values come back through the restricted codec, one call for all names.

        The host writes exactly ``names``: a reply holding any other name (a
        cell can replace the sandbox-side helper) is refused whole, nothing written.
        """
        try:
            replies = [(names, self._call(session, "sandbox_side_get_names", names))]
        except SandboxSecurityError:
            # Name the variable that cannot leave the sandbox.
            replies = []
            for name in names:
                try:
                    replies.append(([name], self._call(session, "sandbox_side_get_names", [name])))
                except SandboxSecurityError as exc:
                    raise sandbox_error("SandboxSecurityError", f"--out {name}: {exc}", host=True) from None
        values: dict[str, Any] = {}
        try:
            for asked, reply in replies:
                values.update(accept_out(asked, reply))
        except SandboxSecurityError as exc:
            session.sandbox.record_violation(
                {"kind": "protocol", "detail": str(exc)[:500], "action": "refused", "trusted": True, "escape": False}
            )
            raise sandbox_error("SandboxSecurityError", str(exc), host=True) from None
        if self.shell is not None:
            self.shell.user_ns.update(values)

    def _run(self, session: NamedSession, code: str, line: str, notices: list[str]) -> tuple[Any, Any]:
        """Run ``code`` (a cell with magic line ``line``) in the session, ``notices`` shown first; outputs
        are shown as they arrive. Returns (result, value)."""
        executed: list[SandboxResult] = []
        sandbox = session.sandbox

        from ..notebook.evidence import cell_binding
        from ..widgets.integration import ipython_cell_monitor, ipython_send

        # Live metrics and violation banners, measured outside the sandbox (host side).
        monitor = ipython_cell_monitor(sandbox, monitor=session.settings.monitor)
        monitor.start()

        removed: list[str] = []
        displays = CellDisplays(next(self._cells))
        terminal = prints_to_terminal(self.shell)

        def on_output(msg: dict[str, Any]) -> Any:  # the frame as shown (JSON-safe, cleaned): what is recorded
            try:
                # No script from the sandbox reaches the browser; keys and values JSON-safe as the relay's.
                shown = displays.scoped(as_dict(clean_frame(msg, removed), removed))
                if terminal:  # IPython prints text/plain itself: as the stream text is filtered
                    shown = terminal_frame(shown)
                monitor.on_output(shown)
                if not show_output(shown, executed, removed):
                    return NOT_SHOWN  # nothing reached the frontend (an update without an id): nothing recorded
            except Exception as exc:  # a hostile frame must not end run_cell before its record
                # Said by the cell's notice (a recorded output), not by a warning: a log line on stderr
                # here would be an output of the cell its record does not list.
                log.debug("dropped an output frame from the sandbox (%s)", type(exc).__name__, exc_info=True)
                if DROPPED_FRAME not in removed:
                    removed.append(DROPPED_FRAME)
                return NOT_SHOWN  # nothing was shown: nothing is recorded
            return shown  # the record lists what the frontend got

        def on_input(prompt: str, password: bool) -> str:
            prompt = printable(prompt)  # the sandbox's text: no escape sequence reaches the terminal
            if password:
                import getpass

                return getpass.getpass(prompt)
            return input(prompt)

        def on_start() -> None:  # the magic's own outputs go through mark_output: the record lists them
            for text in notices:
                _notice(sandbox, text)

        def before_seal(result: Any) -> None:
            monitor.finish(result)
            if removed:
                _notice(sandbox, "glsandbox: removed or replaced in this cell's output: " + "; ".join(removed))
            if not session.alive and result.status == "error":
                self._lost[session.name] = lost_in_cell(result.error_name, result.error_value)
                _notice(
                    sandbox,
                    f"glsandbox: {result.error_name}: the worker of sandbox session {session.name!r} was killed "
                    "and its state is lost; the next cell starts a fresh sandbox.",
                )

        main = threading.current_thread() is threading.main_thread()
        previous: Any = None
        if main:
            # SIGINT (Ctrl-C, or ipykernel's interrupt) interrupts the sandbox instead of
            # tearing the frame exchange; the session kills the worker after its grace period.
            previous = signal.signal(signal.SIGINT, lambda signum, frame: sandbox.interrupt())
        result = None
        try:
            result = sandbox.run_cell(
                code,
                on_output=on_output,
                on_input=_with_sigint(on_input, previous, main),
                allow_stdin=True,
                on_start=on_start,
                before_seal=before_seal,  # the monitor's outputs and notices are listed in the cell's record
                # the options it ran with, as IPython passed them; which cell (its audit output is always shown)
                record_extra={"magic_line": line, **cell_binding(ipython_send()[1], False)},
            )
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
            monitor.finish(result)
        from ..widgets.integration import ipython_emit_audit

        ipython_emit_audit(session.audit_trail, sandbox, result.audit_record)
        return result, (executed[-1] if executed else None)

    # -- line magic -------------------------------------------------------------------------------
    def _line(self, line: str) -> None:
        try:
            args = _LINE_PARSER.parse_argstring(line)
        except UsageError as exc:
            raise UsageError(f"{exc}\n\n{LINE_HELP}") from None
        getattr(self, f"_cmd_{args.command}")(args.name)

    def _resolve(self, name: str | None) -> list[str]:
        names = self.registry.names(name)
        if name is not None and not names:
            known = ", ".join(self.registry.names(None)) or "none"
            raise UsageError(f"no sandbox session named {name!r} (sessions: {known})")
        return names

    def _cmd_status(self, name: str | None) -> None:
        names = self._resolve(name)
        if not names:
            print("No sandbox sessions. Start one with a %%sandbox cell.")
            return
        print(f"{'name':<12} {'state':<8} {'cells':>5}  {'backend':<10} settings")
        for n in names:
            s = self.registry.sessions[n]
            state = "running" if s.alive else "idle"
            pids = ",".join(str(p) for p in s.sandbox.worker_pids) or "-"
            print(
                f"{n:<12} {state:<8} {s.cells:>5}  {s.sandbox.isolation_type:<10} {s.settings.describe()}  "
                f"[pids {pids}]"
            )

    def _cmd_stop(self, name: str | None) -> None:
        names = self._resolve(name)
        for n in names:
            self.registry.stop(n)
            print(f"Stopped sandbox session {n!r}.")
        if not names:
            print("No sandbox sessions to stop.")

    def _cmd_restart(self, name: str | None) -> None:
        for n in self._resolve(name):
            session = self.registry.sessions[n]
            session.sandbox.restart()
            session.shell_ready = False
            print(f"Restarted sandbox session {n!r} (fresh worker; its state is lost).")

    def _cmd_audit(self, name: str | None) -> None:
        from ..audit import verify_records

        for n in self._resolve(name):
            records = self.registry.sessions[n].sandbox.audit_records
            check = verify_records(records, from_genesis=False)
            status = "verified" if check.ok else "BROKEN: " + "; ".join(check.problems[:3])
            print(f"Sandbox session {n!r}: {len(records)} audit records, hash chain {status}")
            for rec in records:
                when = rec.get("timestamp")
                if isinstance(when, (int, float)):
                    when = datetime.datetime.fromtimestamp(when, tz=datetime.timezone.utc).isoformat(
                        timespec="milliseconds"
                    )
                t = rec.get("execution_time")
                took = f"{t * 1000:8.1f} ms" if isinstance(t, (int, float)) else " " * 11
                print(
                    f"  {rec.get('seq', ''):>4} {when or '':<29} {rec.get('event_type', '')!s:<20}"
                    f" {took}  {str(rec.get('record_hash', ''))[:16]}"
                )

    def _cmd_config(self, name: str | None) -> None:
        import json

        names = self._resolve(name)
        if not names:
            print("No sandbox sessions; presets: strict, moderate, lenient (see the README's table).")
        for n in names:
            print(f"Sandbox session {n!r}:")
            print(json.dumps(self.registry.sessions[n].config.to_dict(), indent=2, default=str))


SandboxMagics.sandbox.__doc__ = (SandboxMagics.sandbox.__doc__ or "") + "\n" + LINE_HELP


def _with_sigint(fn: Any, handler: Any, main: bool) -> Any:
    """Ask for input with the kernel's own SIGINT handler, so Ctrl-C ends the prompt."""
    if not main:
        return fn

    def wrapped(prompt: str, password: bool) -> str:
        mine = signal.signal(signal.SIGINT, handler if handler is not None else signal.default_int_handler)
        try:
            return str(fn(prompt, password))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. StdinNotImplementedError: the sandbox sees end of input
            raise EOFError(str(exc)) from None
        finally:
            signal.signal(signal.SIGINT, mine)

    return wrapped


def _notice(sandbox: Any, text: str) -> None:
    """While the cell runs: a notice from the magic itself, a kernel-made output its record lists."""
    from IPython.display import publish_display_data

    from ..notebook.evidence import ROLE_NOTICE, role_metadata

    data = {"text/plain": text}
    meta = role_metadata(ROLE_NOTICE)
    sandbox.mark_output(
        {"output_type": "display_data", "data": data, "metadata": meta}, lambda: publish_display_data(data, meta)
    )
