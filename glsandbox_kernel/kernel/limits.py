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
import signal
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
        #: the one verdict on the cell's MemoryError, shown and recorded (see :meth:`memory_verdict`)
        self._memory_verdict: tuple[Any, str] | None = None
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

    def cpu_used(self, metrics: Any = None) -> float | None:
        """The cell's CPU time measured outside: the monitor's last sample, the call's own figure
        (``metrics``: the session's closing reading, kept when the worker died), or a reading now (a
        cgroup's figures outlive the worker); None without any. Relay or cell thread."""
        seen = [self.seen_cpu] if self.seen_cpu is not None else []
        call_cpu = getattr(metrics, "cpu_time_used", None)
        if isinstance(call_cpu, float):
            seen.append(call_cpu)
        worker = self.sandbox.session.worker
        if worker is not None and self._cpu0 is not None:
            try:
                final = worker.sample().cpu_time
            except OSError:
                final = None
            if final is not None:
                seen.append(final - self._cpu0)
        return max(seen, default=None)

    def memory_verdict(self, metrics: Any = None) -> tuple[Any, str]:
        """The cell's one verdict on a ``MemoryError`` its code reported (:func:`~..results.memory_verdict`
        on the cell's limit and the memory measured outside), taken at the first ask and kept: the
        relay shows it, ``run_cell`` records it (``metrics``: the call's, one more reading)."""
        from ..results import memory_verdict

        with self._lock:
            if self._memory_verdict is None:
                limit = self.options.memory or self.sandbox.config.limits.memory_limit_bytes
                seen, measured_by = self.memory_now()
                peak = getattr(metrics, "memory_peak_bytes", None) if seen is None else seen
                whose = "the cell's" if self.options.memory else "the sandbox's"
                self._memory_verdict = memory_verdict(limit, peak, measured_by, whose)
            return self._memory_verdict

    def host_error(self, failure: BaseException, metrics: Any = None) -> BaseException:
        """The host's error for the cell (``run_cell``'s hook, cell thread): the guard's own kill becomes
        the cell's limit with what it measured; a SIGXCPU death under ``--cpu-time`` is the CPU limit only
        when the cell's CPU time, read outside, reached it (:func:`cpu_reached`), else the cell's own."""
        from ..exceptions import SandboxCrashedError, SandboxMemoryError

        if self.tripped == "memory":
            return SandboxMemoryError(self.describe(), limit=self.options.memory, peak=self.seen_memory)
        cpu = self.options.cpu_time
        if cpu is None or not isinstance(failure, SandboxCrashedError):
            return failure
        if self.tripped == "cpu_time":
            return _cpu_error(self.describe(), failure, cpu, self.seen_cpu)
        if failure.signal != signal.SIGXCPU:
            return failure
        used = self.cpu_used(metrics)
        if cpu_reached(cpu, used):
            text = (
                f"the cell used more than its CPU time limit of {cpu:g} s (SIGXCPU; measured outside the "
                f"sandbox: {used or 0:.2f} s); the worker was killed and its state is lost"
            )
            return _cpu_error(text, failure, cpu, used)
        seen = (
            "the host has no reading of the cell's CPU time, so no limit it saw reached"
            if used is None
            else f"the host measured {used:.2f} s of CPU time for the cell, under its --cpu-time {cpu:g} s"
        )
        return SandboxCrashedError(
            f"the sandbox worker died of SIGXCPU, sent from inside the sandbox ({seen}); its state is lost",
            returncode=failure.returncode,
            signal=failure.signal,
        )

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

    A limit verdict rests on the host's own evidence only, decided once by the guard and given by the
    cell's record too: a host frame (``by_host``, sent by ``OSSandbox.run_cell``) already carries
    :meth:`CellLimitGuard.host_error`'s verdict (a CPU limit is shown as ``SandboxCPUTimeError``); a
    ``MemoryError`` from the sandbox becomes ``SandboxMemoryError`` only as :meth:`CellLimitGuard.memory_verdict`
    says, else it stays the code's own with the host's note. A worker frame named like the host's is the code's.
    """
    ename = content["ename"]
    if by_host and ename == "SandboxCrashedError" and content["evalue"].startswith("the cell used more than its CPU"):
        return {**content, "ename": "SandboxCPUTimeError", "traceback": [f"SandboxCPUTimeError: {content['evalue']}"]}
    if ename == "MemoryError" and not by_host:
        return _memory_error(content, guard)
    return content


def cpu_reached(limit: float, used: float | None) -> bool:
    """HOST side: whether the cell's CPU time measured outside (cgroup usage, or /proc over the tree)
    reached its ``--cpu-time`` ``limit``, less the accounting's granularity (clock ticks of every
    thread: 50 ms and 1 %). The one evidence that makes a SIGXCPU the cell's CPU limit."""
    return used is not None and used >= limit - max(0.05, 0.01 * limit)


def _cpu_error(text: str, failure: Any, limit: float, used: float | None) -> BaseException:
    from ..exceptions import SandboxCrashedError

    return SandboxCrashedError(
        text, returncode=failure.returncode, signal=failure.signal, reason="cpu_time", limit=limit, measured=used
    )


def _memory_error(content: dict[str, Any], guard: CellLimitGuard) -> dict[str, Any]:
    """A ``MemoryError`` the sandbox reported, as the guard's one verdict (:meth:`CellLimitGuard.memory_verdict`,
    which the cell's record gives too): the limit's error, or the code's own error with the host's note as
    the traceback's last line (relay thread)."""
    error, note = guard.memory_verdict()
    if error is not None:
        return {**content, "ename": "SandboxMemoryError", "evalue": str(error)}
    return {**content, "traceback": [*(content.get("traceback") or []), note]}
