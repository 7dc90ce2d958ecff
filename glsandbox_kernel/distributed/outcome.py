"""What a sandboxed Dask task sends back: :class:`TaskOutcome` and exceptions boxed with their details.

Built on the Dask worker (trusted host side, by :mod:`.plugin` and
``notebook/cluster.py``), pickled by Dask, unpickled on the client.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .audit import decode_lines

if TYPE_CHECKING:
    from ..audit.log import AuditLog

_TAKE_LOCK = threading.Lock()


class CallLines:
    """A range of one session's audit records claimed by one task (Dask worker, host side).

    The task's thread only claims the range at checkin; the records are
    sealed by the session's group commit on the host loop, or, at the latest,
    by :meth:`resolve` when Dask pickles the task's result (on the worker's
    event loop, while the task thread runs the next call). A result always
    leaves the worker with its records sealed and committed.
    """

    __slots__ = ("end", "log", "start")

    def __init__(self, log: AuditLog, start: int, end: int) -> None:
        self.log, self.start, self.end = log, start, end

    def resolve(self) -> list[str]:
        """The claimed records as their sealed JSON lines (one string each, no newline)."""
        return [line.decode("utf-8").rstrip("\n") for line in self.log.lines(self.start, self.end)]


class NotStarted:
    """The result of a task of an interrupted run that never began on its worker: nothing ran, no records.

    Returned by the task body on the Dask worker (:func:`.plugin._not_started`); the
    client's executor records the task as cancelled before it started.
    """

    __slots__ = ("key", "worker")

    def __init__(self, key: str, worker: str) -> None:
        self.key, self.worker = key, worker

    def __reduce__(self) -> tuple[Any, ...]:
        return (NotStarted, (self.key, self.worker))


def _rebuild_exception(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    """Unpickle an exception whose ``__init__`` may not accept its own ``args`` (ours take details)."""
    try:
        exc = cls(*args)
    except TypeError:
        try:
            exc = cls.__new__(cls, *args)
        except TypeError:  # a C base refuses too: keep the name and message at least
            from ..exceptions import SandboxRemoteError

            return SandboxRemoteError(f"{cls.__module__}.{cls.__qualname__}", str(args[0] if args else ""), [])
    exc.args = args
    exc.__dict__.update(state)
    return exc


class _ExceptionBox:
    """Ships an exception with its type, args and attributes (``limit``, ``violations``, notes ...).

    Plain pickling re-runs ``cls(*args)``, which fails for exceptions whose
    ``__init__`` takes more than the message (``SandboxRemoteError``,
    ``BackendUnavailableError``); this rebuilds them as they were.
    """

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Any, ...]:
        exc = self.exc
        state = {k: v for k, v in vars(exc).items() if _picklable(v)}
        return (_unbox_exception, (type(exc), exc.args, state))


def _unbox_exception(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> _ExceptionBox:
    return _ExceptionBox(_rebuild_exception(cls, args, state))


def _picklable(value: Any) -> bool:
    import pickle

    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - anything that cannot travel stays behind
        return False
    return True


@dataclass
class TaskOutcome:
    """What one sandboxed task sends back to the client (built on the Dask worker).

    ``value`` is what ``OSSandbox.execute`` returned, i.e. already decoded by
    the restricted codec; ``error`` the exception it raised (same type);
    ``lines`` the audit records this call's session took since its last task
    (this call's own, claimed at checkin so they travel with it, to its run's
    chain; and those of sessions this checkin closed), as the JSON lines their
    session sealed (one string each). On the worker, this call's own records
    wait in ``pending`` (:class:`CallLines`) until the result is pickled
    (:meth:`carried_lines`); they never travel unsealed.
    """

    key: str
    worker: str
    pid: int
    session_id: str | None
    value: Any = None
    boxed_error: _ExceptionBox | None = None
    lines: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    pending: CallLines | None = None

    def carried_lines(self) -> list[str]:
        """``lines`` with the pending records sealed and put first (once; any thread)."""
        if self.pending is not None:
            with _TAKE_LOCK:
                pending, self.pending = self.pending, None
                if pending is not None:
                    self.lines = pending.resolve() + self.lines
        return self.lines

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as one flat tuple (Dask pickles every result on the worker, unpickles it on the client).

        The dataclass default goes through ``copyreg`` in Python with a
        field-name dict per result; a tuple is encoded by the C pickler alone.
        """
        return (
            _rebuild_outcome,
            (
                self.key,
                self.worker,
                self.pid,
                self.session_id,
                self.value,
                self.boxed_error,
                self.carried_lines(),
                self.started,
                self.finished,
                self.detail or None,
            ),
        )

    def __sizeof__(self) -> int:
        """What Dask counts for this result on the worker (``dask.sizeof``): its value and records too."""
        try:
            from dask.sizeof import sizeof as measure
        except ImportError:  # no Dask here: the value's own size
            import sys

            measure = sys.getsizeof  # type: ignore[assignment]
        pending = self.pending
        lines = sum(map(len, self.lines)) + (512 * (pending.end - pending.start) if pending is not None else 0)
        return object.__sizeof__(self) + int(measure(self.value)) + int(measure(self.detail)) + lines

    @property
    def error(self) -> BaseException | None:
        return self.boxed_error.exc if self.boxed_error is not None else None

    @property
    def records(self) -> list[dict[str, Any]]:
        """The carried records, decoded (client side, for readers; the run chain keeps ``lines``)."""
        return decode_lines(self.carried_lines())


def _rebuild_outcome(*fields: Any) -> TaskOutcome:
    """Unpickle a :class:`TaskOutcome` (client side; from a trusted Dask worker)."""
    outcome = TaskOutcome(*fields)
    if outcome.detail is None:
        outcome.detail = {}
    return outcome
