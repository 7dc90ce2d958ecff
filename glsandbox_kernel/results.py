"""What a request to the worker produced, host side: cell results, call outcomes, remote errors.

:class:`CellResult` is what ``OSSandbox.run_cell`` returns; :class:`CallOutcome`
is how one session request ended; :func:`exception_from_reply` turns a worker's
error reply (untrusted text) into the exception the caller sees; :func:`refuse_tampered`
turns a reply with fields of types the worker never sends (forged by sandboxed code)
into a protocol violation of its call. Who calls:
:mod:`glsandbox_kernel.session` and :mod:`glsandbox_kernel.sandbox`.
"""

from __future__ import annotations

import builtins
import dataclasses
import signal
import time
from typing import TYPE_CHECKING, Any

from .config import OSSandboxConfig
from .disk_guard import disk_error
from .exceptions import (
    FrameTooLarge,
    SandboxCrashedError,
    SandboxError,
    SandboxMemoryError,
    SandboxRemoteError,
    SandboxSecurityError,
)
from .metrics import Monitor, SandboxMetrics
from .protocol import frame_cap
from .terminal_text import as_text
from .units import fmt_bytes

if TYPE_CHECKING:
    from .backends.base import ResourceSample, WorkerProcess


@dataclasses.dataclass
class CellResult:
    """What one cell did: status, Jupyter outputs, error, count, metrics, violations."""

    status: str
    outputs: list[dict[str, Any]]
    execution_count: int | None = None
    error_name: str | None = None
    error_value: str | None = None
    #: the error is the host's own verdict (timeout, kill, violation measured outside), not a
    #: name the worker reported: only then may ``error_name`` stand for one of the library's classes
    error_by_host: bool = False
    traceback: list[str] | None = None
    payload: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    user_expressions: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: SandboxMetrics | None = None
    violations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    state_lost: bool = False
    audit_record: dict[str, Any] | None = None
    #: enforcing mode after a violation: "stopped" (the cell ended when told to) or "killed"
    enforcement: str | None = None
    #: the cell called ``exit``/``quit`` (the worker's boolean flag, never a payload of its own)
    ask_exit: bool = False


@dataclasses.dataclass
class CallOutcome:
    """Internal: how one request ended (reply or failure) plus its measurements."""

    reply: dict[str, Any] | None
    error: BaseException | None
    metrics: SandboxMetrics
    violations: list[dict[str, Any]]
    state_lost: bool
    call_id: int | None = None
    #: enforcing mode, after a violation of this call: "stopped" (it ended when told to)
    #: or "killed" (it kept running past the grace period); None when it was not stopped
    enforced: str | None = None


_fmt_bytes = fmt_bytes  # the one sizes formatter (units.py), as the session and replies spell it

#: the reply fields the host reads and the types the worker sends them as (``cell_reply``, ``result``)
_REPLY_FIELDS: dict[str, tuple[type, ...]] = {
    "status": (str,),
    "ok": (bool,),
    "refused": (str,),
    "ename": (str,),
    "evalue": (str,),
    "traceback": (list,),
    "builtin": (bool,),
    "memory_error": (bool,),
    "over_cap": (bool,),
    "execution_count": (int, type(None)),
    "payload": (list,),
    "user_expressions": (dict,),
    "ask_exit": (bool,),
}


def reply_tampering(reply: dict[str, Any]) -> str | None:
    """HOST side: which fields of a worker's reply have a type the worker never sends, or None.

    The worker sends text, flags and lists as such; anything else (an int past Python's digit limit
    as ``ename``, an array as ``ok``) was forged by sandboxed code on the worker's channel."""
    wrong = [
        f"{key} is {type(reply[key]).__name__}"
        for key, types in _REPLY_FIELDS.items()
        if key in reply and not isinstance(reply[key], types)
    ]
    tb = reply.get("traceback")
    if isinstance(tb, list) and not all(isinstance(line, str) for line in tb):
        wrong.append("traceback has lines that are not text")
    return ", ".join(wrong) or None


def refuse_tampered(outcome: CallOutcome, session: Any, also: str | None = None) -> CallOutcome:
    """HOST side: ``outcome`` as is, or, when its reply was tampered with (:func:`reply_tampering`,
    or ``also``: the cell's own frames, e.g. an input prompt that is not text), a protocol violation:
    the worker is killed (its real reply and later output would follow the forged one), the reply
    dropped, the violation listed in the call's record and the error a ``SandboxSecurityError``.
    Called by ``OSSandbox.run_cell`` and ``OSSandbox._call`` before they record the outcome."""
    wrong = reply_tampering(outcome.reply) if outcome.error is None and outcome.reply is not None else None
    wrong = ", ".join(w for w in (wrong, also) if w)
    if not wrong:
        return outcome
    session.kill_worker()
    detail = (
        f"protocol violation: the sandbox forged a frame with fields of types the worker never sends ({wrong[:300]})"
    )
    violation = {
        "kind": "protocol",
        "detail": detail,
        "action": "refused",
        "trusted": True,
        "escape": False,
        "source": "host",
        "time": time.time(),
        "session_id": session.session_id,
        "call_id": outcome.call_id,
    }
    outcome.metrics.state_lost = True
    outcome.metrics.violations_detected += 1
    error = outcome.error or SandboxSecurityError(f"{detail}; the worker was killed and its state is lost")
    return dataclasses.replace(outcome, reply=None, error=error, violations=[*outcome.violations, violation])


def error_fields(reply: dict[str, Any]) -> tuple[str, str, list[str]]:
    """HOST side: an error reply's ``ename``, ``evalue`` and traceback lines as bounded text, never raising
    (:func:`~glsandbox_kernel.terminal_text.as_text`). Called by ``OSSandbox.run_cell`` and
    :func:`exception_from_reply`, after :func:`refuse_tampered` refused fields of other types."""
    tb = reply.get("traceback")
    lines = [as_text(line) for line in tb] if isinstance(tb, list) else []
    return as_text(reply.get("ename", "Exception")), as_text(reply.get("evalue", "")), lines


def exception_from_reply(
    reply: dict[str, Any],
    config: OSSandboxConfig,
    peak: int | None,
    *,
    interrupted: bool = False,
    measured_by: str | None = None,
) -> BaseException:
    """The exception to raise for an error reply from user code (host side).

    ``interrupted``: the host interrupted this call itself, so a KeyboardInterrupt reply is its own
    interrupt coming back and is raised as one; any other BaseException from the sandbox is not.
    A ``MemoryError`` is :class:`SandboxMemoryError` only when ``peak`` (measured outside) reached
    the limit (:func:`memory_reached`); else it stays the code's own, with a note of what the host
    measured (:func:`memory_verdict`, as a cell's; ``measured_by``: the call's ``metrics.measured_by``).
    """
    ename, evalue, tb_lines = error_fields(reply)
    limits = config.limits
    verdict = memory_verdict(limits.memory_limit_bytes, peak, measured_by)  # the one verdict, as a cell's
    if reply.get("over_cap") is True:  # the worker would not send more than this session accepts
        exc: BaseException = FrameTooLarge(
            "the result is larger than this session accepts from the sandbox (max_frame_bytes, or the memory "
            "limit); it was not sent, and the worker and its state are kept",
            limit=frame_cap(config.max_frame_bytes, config.limits.memory_limit_bytes),
        )
    elif ename == "MemoryError" and reply.get("memory_error") and verdict[0] is not None:
        exc = verdict[0]
    elif interrupted and ename == "KeyboardInterrupt" and reply.get("builtin"):
        exc = KeyboardInterrupt(evalue)
    else:
        cls = getattr(builtins, ename, None)
        exc = SandboxRemoteError(ename, evalue, tb_lines)
        # Only Exception subclasses: a sandboxed SystemExit/KeyboardInterrupt/GeneratorExit raised as
        # itself would pass the caller's ``except Exception`` and end (or interrupt) the host program.
        if isinstance(cls, type) and issubclass(cls, Exception) and reply.get("builtin"):
            try:
                exc = cls(evalue)
            except Exception:  # noqa: BLE001 - some builtins need more arguments
                exc = SandboxRemoteError(ename, evalue, tb_lines)
    try:
        exc.sandbox_traceback = tb_lines  # type: ignore[attr-defined]
        if tb_lines:
            exc.add_note("Traceback inside the sandbox:\n" + "".join(tb_lines).rstrip())
        if ename == "MemoryError" and not isinstance(exc, SandboxMemoryError):
            exc.add_note(verdict[1] or memory_error_note(limits.memory_limit_bytes, peak, measured_by))
    except (AttributeError, TypeError):
        pass
    return exc


def memory_reached(limit: int | None, peak: int | None) -> bool:
    """HOST side: whether ``peak``, measured outside, reached the memory ``limit`` (less a margin of
    2 %, at least 1 MiB: a cgroup's usage stops just short of its max while the kernel reclaims).

    The one evidence that makes a ``MemoryError`` reported by the sandbox the host's limit verdict:
    the worker's reply, its ``memory_error`` flag and its text are the sandbox's word (code may
    ``raise MemoryError`` itself). Called by :func:`exception_from_reply`, :func:`cell_error`
    and the kernel's per-cell limits."""
    return limit is not None and peak is not None and peak >= limit - max(1 << 20, limit // 50)


def memory_error_note(limit: int | None, peak: int | None, measured_by: str | None, which: str = "") -> str:
    """HOST side: the note on a ``MemoryError`` the sandbox reported without the host's evidence of a
    limit (:func:`memory_reached` false): what the host measured, and, where no cgroup holds the memory
    (figures from /proc, or none), that an address-space rlimit inside may have refused an allocation
    the host cannot see. ``which``: whose limit, e.g. "the cell's memory limit" (default: the sandbox's)."""
    which = which or "the sandbox's memory limit"
    text = f"glsandbox: the sandbox reported MemoryError; the host measured a peak of {_fmt_bytes(peak)}"
    text += f" of {which} of {_fmt_bytes(limit)}" if limit is not None else " (no memory limit is set)"
    if limit is not None and not (measured_by or "").startswith("cgroup"):
        text += (
            "; no cgroup holds that limit, so an address-space rlimit (RLIMIT_AS) inside the sandbox may have "
            "refused an allocation, which the host cannot see"
        )
    return text + ": not a limit the host saw reached"


def memory_verdict(
    limit: int | None, peak: int | None, measured_by: str | None, whose: str = "the sandbox's"
) -> tuple[SandboxMemoryError | None, str]:
    """HOST side: THE verdict on a ``MemoryError`` the sandbox reported, for one limit and one peak
    measured outside: ``(the limit's error, "")`` when the peak reached it (:func:`memory_reached`),
    else ``(None, the host's note)``. ``whose``: "the cell's" (a kernel cell's ``--memory``, held inside
    by RLIMIT_AS only) or "the sandbox's". Called by :func:`cell_error` (the audit record and the
    library's result) and the kernel's per-cell guard (its display), so both give one verdict."""
    if memory_reached(limit, peak):
        text = (
            f"the sandboxed code reached {whose} memory limit of {_fmt_bytes(limit)} (peak measured outside the "
            f"sandbox: {_fmt_bytes(peak)}) and got MemoryError; the worker and its state are kept"
        )
        return SandboxMemoryError(text, limit=limit, peak=peak), ""
    held_by = None if whose == "the cell's" else measured_by  # a cell's --memory: an rlimit, never a cgroup
    return None, memory_error_note(limit, peak, held_by, f"{whose} memory limit")


def cell_error(config: OSSandboxConfig, result: CellResult, metrics: SandboxMetrics, judge: Any = None) -> SandboxError:
    """HOST side: the audit record's error for a cell whose code raised ``result``'s error (the worker's
    report): :class:`SandboxMemoryError` (``memory_exceeded``) only for a ``MemoryError`` with the
    peak measured outside at the limit (:func:`memory_verdict`); any other, a ``MemoryError`` too,
    stays the code's own error (``execution_error``), a ``MemoryError`` with the host's note.
    ``result`` then shows that one verdict too (the magic raises it): the host's limit error, or the
    note as its traceback's last line. ``judge``: the kernel's per-cell guard, whose
    ``memory_verdict(metrics)`` is the one it showed. Called by ``OSSandbox.run_cell``."""
    name, value = result.error_name, result.error_value
    if name != "MemoryError":
        return SandboxError(f"{name}: {value}")
    if judge is not None:
        error, note = judge.memory_verdict(metrics)
    else:
        error, note = memory_verdict(config.limits.memory_limit_bytes, metrics.memory_peak_bytes, metrics.measured_by)
    if error is not None:
        result.error_name, result.error_value, result.error_by_host = "SandboxMemoryError", str(error), True
        return error
    result.traceback = [*(result.traceback or []), note]
    return SandboxError(f"{name}: {value} ({note})")


def crash_error(worker: WorkerProcess, when: str, config: OSSandboxConfig, monitor: Monitor) -> SandboxError:
    """HOST side: the error for a worker that died ``when`` (during a call, while starting): the
    outside guards' verdicts first (too many tasks, resident memory), then the cgroup's OOM kill,
    then the signal or exit code. Called by the session."""
    rc = worker.wait(1.0)
    info = worker.exit_info()
    rc = info.returncode if info.returncode is not None else rc
    limit = config.limits.memory_limit_bytes
    disk = disk_error(monitor.disk, rc)
    if disk is not None:  # the outside guard killed the tree for what it wrote to its host folders
        return disk
    cpu = monitor.cpu_exceeded
    if cpu is not None:  # the outside monitor killed the tree for its CPU time
        return cpu_time_error(cpu[0], cpu[1], returncode=rc)
    tasks = monitor.tasks_exceeded
    if tasks is not None:  # the outside guard killed the tree for too many tasks
        return SandboxCrashedError(
            f"the sandbox ran {tasks[1]} tasks (processes and threads), over its max_processes of "
            f"{tasks[0]}; the worker and every process it started were killed and its state is lost",
            returncode=rc,
            reason="pids",
        )
    if monitor.memory_unmeasured is not None and limit is not None:  # the guard could not count it: refused
        return SandboxMemoryError(
            f"the memory limit of {_fmt_bytes(limit)} cannot be held here: the outside monitor (no cgroup) "
            f"could not read the sandbox's socket memory ({monitor.memory_unmeasured}); the worker and every "
            "process it started were killed and its state is lost",
            limit=limit,
        )
    exceeded = monitor.memory_exceeded
    if exceeded is not None:  # the outside guard killed the tree (no cgroup here)
        guard_peak = max(exceeded[1], monitor.peak_memory or 0)
        return SandboxMemoryError(
            f"the sandbox's resident memory ({_fmt_bytes(exceeded[1])}) exceeded the memory limit of "
            f"{_fmt_bytes(exceeded[0])}; the worker and every process it started were killed and its "
            "state is lost",
            limit=exceeded[0],
            peak=guard_peak,
        )
    if info.reason == "oom":
        # The cgroup's own peak outlives the process and saw the last burst, which the
        # monitor's periodic sample may have missed: the larger of the two.
        try:
            final = worker.sample().memory_peak
        except OSError:
            final = None
        seen = [p for p in (monitor.peak_memory, final) if p is not None]
        peak = max(seen) if seen else None
        return SandboxMemoryError(
            f"the worker was killed for exceeding the memory limit of {_fmt_bytes(limit)} "
            f"(peak seen {_fmt_bytes(peak)}); its state is lost",
            limit=limit,
            peak=peak,
        )
    how = "an unknown cause"
    sig = None
    if rc is not None and rc < 0:
        sig = -rc
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        how = f"signal {name}"
        if sig == signal.SIGXCPU:
            how += _sigxcpu_cause(worker, config, monitor)
        elif sig == signal.SIGXFSZ:
            how += " (file size limit)"
    elif rc is not None:
        how = f"exit code {rc}"
    # SIGXCPU is the CPU limit only where the host set one and did not measure it unreached (any
    # process of the sandbox may send it): a per-cell --cpu-time is judged by the kernel's own reading
    at_limit = config.limits.cpu_time_limit_seconds is not None and "sent from inside" not in how
    reason = info.reason or ("cpu_time" if sig == signal.SIGXCPU and at_limit else None)
    return SandboxCrashedError(
        f"the sandbox worker died {when} ({how}); its state is lost", returncode=rc, signal=sig, reason=reason
    )


def _sigxcpu_cause(worker: WorkerProcess, config: OSSandboxConfig, monitor: Monitor) -> str:
    """Why a worker died of SIGXCPU, as far as the host measured: RLIMIT_CPU sends it only once one
    process used the whole limit, so a tree measured below the limit got it from inside (not a limit)."""
    limit = config.limits.cpu_time_limit_seconds
    if not limit:
        return ""
    seen = []
    left = monitor.cpu_left  # at the monitor's last reading
    if left is not None:
        seen.append(limit - left)
    try:
        final = worker.sample().cpu_time  # cgroup figures outlive the process (a /proc sum does not)
    except OSError:
        final = None
    if final is not None and monitor.cpu_base is not None and final > monitor.cpu_base:
        seen.append(final - monitor.cpu_base)
    if not seen:
        return f" (CPU time limit of {limit:g} s, not confirmed by a measurement)"
    used = max(seen)
    if used < 0.9 * limit:
        return f" sent from inside the sandbox: its processes used {used:.2f} s of CPU, under the {limit:g} s limit"
    return f" (CPU time limit of {limit:g} s)"


def cpu_time_error(limit: float, used: float, *, returncode: int | None = None) -> SandboxCrashedError:
    """HOST side: the error for a sandbox whose processes together used more CPU time than
    ``cpu_time_limit_seconds`` (measured outside: the cgroup, else /proc over the tree); the
    same type, reason and wording family as RLIMIT_CPU's SIGXCPU for one process. Called by
    :func:`crash_error` (the monitor killed the tree mid-call) and the session (at a call's end)."""
    return SandboxCrashedError(
        f"the sandbox's processes used {used:.2f} s of CPU time together (measured outside), over the CPU "
        f"time limit of {limit:g} s; the worker and every process it started were killed and its state is lost",
        returncode=returncode,
        signal=signal.SIGKILL,
        reason="cpu_time",
        limit=limit,
        measured=used,
    )


def cpu_overrun(monitor: Monitor, after: ResourceSample | None) -> SandboxCrashedError | None:
    """HOST side, at a call's end: the error when the tree's CPU time, read outside in the closing
    reading, is past the limit (a call shorter than a sampling period); the session kills the worker."""
    used = monitor.cpu_over(after.cpu_time if after is not None else None)
    if used is None or monitor.cpu_limit is None:
        return None
    monitor.cpu_exceeded = (monitor.cpu_limit, used)
    return cpu_time_error(monitor.cpu_limit, used)


def memory_overrun(
    metrics: SandboxMetrics, worker: WorkerProcess, monitor: Monitor, after: ResourceSample | None = None
) -> SandboxError | None:
    """HOST side, where no cgroup enforces the limit: the error for a call whose resident peak,
    measured outside, passed it (None when it did not). See :mod:`.memory_guard`.

    ``after``: the call's closing reading of the worker process; its peak less its
    file-backed pages is the worker's own high water (read again from /proc without it)."""
    limit = monitor.memory_limit
    if limit is None or not (metrics.measured_by or "").startswith("procfs"):
        return None
    if after is not None and after.source == "procfs" and after.memory_peak is not None:
        high_water: int | None = max(0, after.memory_peak - (after.memory_file or 0))
    else:
        from .memory_guard import high_water_without_files

        high_water = high_water_without_files(getattr(worker, "pid", None))
    readings = (monitor.peak_resident, high_water)
    peak = max((r for r in readings if r is not None), default=None)
    if peak is None or peak <= limit:
        return None
    return SandboxMemoryError(
        f"the sandbox's resident memory peaked at {fmt_bytes(peak)}, over the memory limit of {fmt_bytes(limit)}; "
        "the worker was replaced and its state is lost",
        limit=limit,
        peak=peak,
    )
