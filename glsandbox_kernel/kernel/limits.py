"""Per-cell limits in the glsandbox kernel (host side).

A cell whose first line is ``%%sandbox --timeout 5 --memory 200M --cpu-time 10``
runs with those limits, for that cell only, in the same session (its state
persists). How each is enforced:

- ``--timeout``: the session's own clock (``run_cell(timeout=...)``), outside.
- ``--memory``: inside, the worker lowers its soft ``RLIMIT_AS`` so that the
  cell can add at most the headroom up to the limit (a large allocation fails
  cleanly with ``MemoryError`` and the state is kept; the host cannot see that
  refusal, so it is shown as the code's own ``MemoryError`` with a note of what
  the host measured, never as the host's limit verdict); outside,
  :class:`CellLimitGuard` watches the worker tree's memory through the
  session monitor (cgroup figures where the backend has them) and kills the
  worker when it goes over (state lost).
- ``--cpu-time``: inside, a soft ``RLIMIT_CPU`` at "used so far + limit";
  outside, the same guard kills the worker when the tree's CPU time for the
  cell passes the limit.

The worker may undo its own soft limits; it can never go above the
session's hard limits, and the outside guard does not depend on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import threading
from typing import Any

from ..config import parse_size
from ..exceptions import CellOptionsError, SandboxConfigError
from ..units import fmt_bytes

log = logging.getLogger("glsandbox.kernel")

MAGIC = "%%sandbox"

HELP = """\
usage: %%sandbox [--timeout S] [--memory SIZE] [--cpu-time S]

As the first line of a cell in the glsandbox kernel, sets limits for that cell
only; the session (and its variables) stays the same.

  --timeout S      wall-clock limit in seconds (the worker is killed after it)
  --memory SIZE    memory limit, e.g. 200M or 1.5G
  --cpu-time S     CPU time limit in seconds

The security level and isolation are chosen per kernel ("Python 3 (sandboxed)"
or "Python 3 (sandboxed, strict)"), not per cell."""


@dataclasses.dataclass(frozen=True)
class CellOptions:
    """Limits for one cell; ``None`` keeps the session's value."""

    timeout: float | None = None
    memory: int | None = None
    cpu_time: float | None = None

    @property
    def needs_guard(self) -> bool:
        return self.memory is not None or self.cpu_time is not None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CellOptionsError(f"%%sandbox: {message}\n\n{HELP}")


def _positive(kind: str) -> Any:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be a number of seconds, not {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{kind} must be > 0, not {text!r}")
        return value

    return convert


def _size(text: str) -> int:
    try:
        value = parse_size(text)
    except SandboxConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 16 * 1024 * 1024:
        raise argparse.ArgumentTypeError(f"memory must be at least 16M, not {text!r}")
    return value


_PARSER = _Parser(prog="%%sandbox", add_help=False)
_PARSER.add_argument("--timeout", type=_positive("--timeout"))
_PARSER.add_argument("--memory", type=_size)
_PARSER.add_argument("--cpu-time", dest="cpu_time", type=_positive("--cpu-time"))
_PARSER.add_argument("-h", "--help", action="store_true")


def split_cell_options(code: str) -> tuple[CellOptions | None, str]:
    """``(options, code to run)``; options are None when the cell has no ``%%sandbox`` line.

    The ``%%sandbox`` line becomes a comment, so line numbers in tracebacks
    still match the cell. Raises :class:`CellOptionsError` for bad options.
    """
    stripped = code.lstrip()
    if not stripped.startswith(MAGIC):
        return None, code
    first = stripped.partition("\n")[0]
    words = first[len(MAGIC) :]
    if words and not words[0].isspace():
        return None, code  # e.g. %%sandboxed: not ours
    import shlex

    try:
        argv = shlex.split(words)
    except ValueError as exc:
        raise CellOptionsError(f"%%sandbox: {exc}\n\n{HELP}") from None
    args = _PARSER.parse_args(argv)
    if args.help:
        raise CellOptionsError(HELP)
    options = CellOptions(timeout=args.timeout, memory=args.memory, cpu_time=args.cpu_time)
    return options, commented_options_line(code)


def commented_options_line(code: str) -> str:
    """The code the kernel runs for a cell that starts with a ``%%sandbox`` options line: that line
    as a comment (what :func:`split_cell_options` returns, and what the cell's record hashes).
    Who calls: the verifier (``notebook/checks.py``), to match the record to the cell's source."""
    stripped = code.lstrip()
    first, newline, rest = stripped.partition("\n")
    return f"{code[: len(code) - len(stripped)]}# {first}{newline}{rest}"


def cap_to_session(options: CellOptions, config: Any) -> tuple[CellOptions, list[str]]:
    """A cell's limits within the session's, and a notice for each one asked above it.

    The ``%%sandbox`` line is the notebook's text, chosen by whoever wrote it: it may
    lower the limits a kernel (or ``glsandbox run --timeout``) set, never lift them.
    ``config``: the session's OSSandboxConfig. Host side, the kernel's cell thread.
    """
    notices = []
    timeout, memory, cpu = options.timeout, options.memory, options.cpu_time
    cap_timeout = config.execution_timeout
    if timeout is not None and cap_timeout is not None and timeout > cap_timeout:
        notices.append(f"--timeout {timeout:g} s is above this kernel's limit of {cap_timeout:g} s")
        timeout = cap_timeout
    cap_memory = config.limits.memory_limit_bytes
    if memory is not None and cap_memory is not None and memory > cap_memory:
        notices.append(f"--memory {fmt_bytes(memory)} is above this kernel's sandbox limit of {fmt_bytes(cap_memory)}")
        memory = cap_memory
    cap_cpu = config.limits.cpu_time_limit_seconds
    if cpu is not None and cap_cpu is not None and cpu > cap_cpu:
        notices.append(f"--cpu-time {cpu:g} s is above this kernel's limit of {cap_cpu:g} s")
        cpu = cap_cpu
    texts = [f"glsandbox: {n}; the cell gets at most the kernel's limit.\n" for n in notices]
    return CellOptions(timeout=timeout, memory=memory, cpu_time=cpu), texts


class CellLimitGuard:
    """Applies a cell's ``--memory``/``--cpu-time`` around one ``run_cell`` (host side).

    ``with CellLimitGuard(sandbox, options): sandbox.run_cell(...)``. On entry
    it asks the worker to lower its soft rlimits (a ``set_limits`` request)
    and subscribes to the session monitor; a sample over a limit kills the
    worker from this side and sets :attr:`tripped`. On exit the worker's soft
    limits are restored (when it is still alive).
    """

    def __init__(self, sandbox: Any, options: CellOptions) -> None:
        self.sandbox = sandbox
        self.options = options
        self.tripped: str | None = None
        self.seen_memory: int | None = None
        self.seen_cpu: float | None = None
        self._cpu0: float | None = None
        self._lock = threading.Lock()
        self._active = False

    def __enter__(self) -> CellLimitGuard:
        if not self.options.needs_guard:
            return self
        session = self.sandbox.session
        session.ensure_started()
        msg: dict[str, Any] = {"type": "set_limits"}
        if self.options.memory is not None:
            msg["memory"] = self.options.memory
        if self.options.cpu_time is not None:
            msg["cpu_time"] = self.options.cpu_time
        try:
            self.sandbox.request(msg, "set_limits_reply", timeout=10.0)
        except Exception:
            log.warning("the worker did not accept per-cell rlimits; enforcing from outside only", exc_info=True)
        if self.options.cpu_time is not None:
            sample = session.sample()
            self._cpu0 = sample.cpu_time if sample is not None else None
        self._active = True
        session.monitor.listeners.append(self._on_sample)
        return self

    def _on_sample(self, event: dict[str, Any]) -> None:
        """Monitor thread: kill the worker when the cell goes over a limit."""
        if not self._active or event.get("kind") != "cell" or self.tripped:
            return
        memory = max(
            (v for v in (event.get("memory_current"), event.get("memory_peak")) if isinstance(v, int)), default=None
        )
        if memory is not None:
            self.seen_memory = max(self.seen_memory or 0, memory)
        limit = self.options.memory
        if limit is not None and memory is not None and memory > limit:
            self._trip("memory")
            return
        cpu = event.get("cpu_time")
        if self.options.cpu_time is not None and self._cpu0 is not None and isinstance(cpu, (int, float)):
            self.seen_cpu = cpu - self._cpu0
            # RLIMIT_CPU inside fires first; the outside check allows a second of slack.
            if self.seen_cpu > self.options.cpu_time + 1.0:
                self._trip("cpu_time")

    def _trip(self, why: str) -> None:
        with self._lock:
            if self.tripped:
                return
            self.tripped = why
        self.sandbox.session.kill()

    def __exit__(self, *exc: object) -> None:
        if not self._active:
            return
        self._active = False
        session = self.sandbox.session
        try:
            session.monitor.listeners.remove(self._on_sample)
        except ValueError:
            pass
        if self.tripped or not session.alive:
            return
        msg: dict[str, Any] = {"type": "set_limits"}
        if self.options.memory is not None:
            msg["memory"] = None
        if self.options.cpu_time is not None:
            msg["cpu_time"] = None
        try:
            self.sandbox.request(msg, "set_limits_reply", timeout=10.0)
        except Exception:
            log.debug("could not restore the worker's rlimits", exc_info=True)

    def memory_now(self) -> tuple[int | None, str | None]:
        """The most memory measured outside during the cell (the monitor's samples and a reading now)
        and the reading's source ("cgroup-v2", "procfs"...). Relay thread, at a MemoryError frame."""
        sample = self.sandbox.session.sample()
        now = sample.memory_current if sample is not None else None
        # a /proc memory_peak is the process's lifetime high water, not the cell's: only a cgroup's
        peak = sample.memory_peak if sample is not None and sample.source.startswith("cgroup") else None
        seen = [v for v in (self.seen_memory, now, peak) if v is not None]
        return max(seen, default=None), sample.source if sample is not None else None

    def cpu_used(self) -> float | None:
        """The cell's CPU time measured outside: the monitor's last sample, or a reading now (a
        cgroup's figures outlive the worker); None without either. Relay thread."""
        seen = [self.seen_cpu] if self.seen_cpu is not None else []
        worker = self.sandbox.session.worker
        if worker is not None and self._cpu0 is not None:
            try:
                final = worker.sample().cpu_time
            except OSError:
                final = None
            if final is not None:
                seen.append(final - self._cpu0)
        return max(seen, default=None)

    def describe(self) -> str:
        """What tripped, for the error message."""
        if self.tripped == "memory":
            return (
                f"the cell used more than its memory limit of {fmt_bytes(self.options.memory)} "
                f"(measured outside the sandbox: {fmt_bytes(self.seen_memory)}); the worker was killed "
                "and its state is lost"
            )
        if self.tripped == "cpu_time":
            return (
                f"the cell used more than its CPU time limit of {self.options.cpu_time:g} s "
                f"(measured outside the sandbox: {self.seen_cpu or 0:.1f} s); the worker was killed "
                "and its state is lost"
            )
        return ""


def rewrite_error(
    content: dict[str, Any], guard: CellLimitGuard, sandbox: Any, options: CellOptions, by_host: bool = False
) -> dict[str, Any]:
    """HOST side, relay thread: name sandbox limits clearly in a cell's error output (called by the kernel).

    A limit verdict rests on the host's own evidence only. ``by_host``: the frame is the host's own
    error (``OSSandbox.run_cell`` sends it, a worker frame never is one). The guard's kill and a
    SIGXCPU death with the cell's CPU time measured outside near its limit become the limit's error;
    a ``MemoryError`` from the sandbox becomes ``SandboxMemoryError`` only with the memory measured
    outside at the limit (:func:`~glsandbox_kernel.results.memory_reached`), else it stays the code's
    own (name, value, traceback) with a note of what the host measured. An error the sandbox named
    like the host's (``SandboxCrashedError: ... SIGXCPU``) is shown as the code's.
    """
    ename = content["ename"]
    if guard.tripped and by_host and ename in ("SandboxCrashedError", "SandboxMemoryError"):
        ename = "SandboxMemoryError" if guard.tripped == "memory" else "SandboxCPUTimeError"
        text = guard.describe()
        return {"ename": ename, "evalue": text, "traceback": [f"{ename}: {text}"]}
    if ename == "MemoryError" and not by_host:
        return _memory_error(content, guard, sandbox, options)
    cpu = options.cpu_time
    if by_host and cpu is not None and ename == "SandboxCrashedError" and "SIGXCPU" in content["evalue"]:
        used = guard.cpu_used()
        # RLIMIT_CPU sends it at the limit; the monitor's last sample may lag it by a period (0.25 s of wall time)
        if used is None or used < cpu - max(0.1 * cpu, 0.5):
            return content  # sent from inside: the host's own crash error as it is
        text = (
            f"the cell used more than its CPU time limit of {cpu:g} s (SIGXCPU; measured outside the "
            f"sandbox: {used:.1f} s); the worker was killed and its state is lost"
        )
        return {"ename": "SandboxCPUTimeError", "evalue": text, "traceback": [f"SandboxCPUTimeError: {text}"]}
    return content


def _memory_error(content: dict[str, Any], guard: CellLimitGuard, sandbox: Any, options: CellOptions) -> dict[str, Any]:
    """A ``MemoryError`` the sandbox reported: the limit's error when the memory measured outside reached
    it, else the code's own error with the host's note as the traceback's last line (relay thread)."""
    from ..results import memory_error_note, memory_reached

    limit = options.memory or sandbox.config.limits.memory_limit_bytes
    seen, measured_by = guard.memory_now()
    which = "the cell's" if options.memory else "the sandbox's"
    if memory_reached(limit, seen):
        text = (
            f"the cell reached {which} memory limit of {fmt_bytes(limit)} (measured outside the sandbox: "
            f"{fmt_bytes(seen)}) and got MemoryError; the sandbox kept running and its state is kept"
        )
        return {**content, "ename": "SandboxMemoryError", "evalue": text}
    # The cell's --memory is held inside by a soft RLIMIT_AS (and outside by the guard's kill): no cgroup.
    note = memory_error_note(limit, seen, None if options.memory else measured_by, f"{which} memory limit")
    return {**content, "traceback": [*(content.get("traceback") or []), note]}
