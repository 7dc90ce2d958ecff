"""Interrupts bound to the operation they target (HOST side).

A mixin of :class:`~glsandbox_kernel.session.Session`. Every call, cell or
comm message is one *operation*, numbered in order (a cell's shell start-up
request belongs to its cell). :meth:`InterruptBinding.interrupt` names the
operation it is for (by default the one in progress) and applies to it only:

- while that operation's user-code request is with the worker: SIGINT now
  (killed after the grace period if it does not stop);
- before its request was sent (the worker is starting, the shell is being
  built, the caller is still preparing it; or the caller named
  :attr:`~InterruptBinding.next_operation` before starting it): the request
  is not sent at all and ends as a KeyboardInterrupt, the state kept;
- after it ended, or when none is in progress: nothing, so a late interrupt
  never reaches the next operation.

Deciding and signalling happen under one lock that the request also takes
when it sends and when it has read its reply, so a SIGINT is only ever sent
while its operation's request is with the worker. The worker drops a SIGINT
that arrives between requests, and holds one that arrives after it read a
call until its user code starts (:mod:`.worker.loop`; a cell's shell still drops one that comes
before the cell's code runs, and the grace period then applies).
Who calls: the kernel's interrupt handler, ``OSSandbox.interrupt``, the
magic's SIGINT handler (in the requesting thread itself: the lock is re-entrant).
"""

from __future__ import annotations

import signal
import threading
import time

from .backends.base import WorkerProcess

#: request types that run user code (the others are the shell's own: completion, history...)
USER_CODE = frozenset({"call", "cell", "comm_open", "comm_msg", "comm_close"})


class NotSent(Exception):
    """The request's operation was interrupted before the request was sent."""


class InterruptKilled(Exception):
    """The code did not stop within the grace period after SIGINT."""


class InterruptBinding:
    """The interrupt side of a session (state set by :meth:`_init_interrupts` in its ``__init__``)."""

    worker: WorkerProcess | None
    _lock: threading.RLock

    def _init_interrupts(self) -> None:
        self._int_lock = threading.RLock()
        self._ticket = 0  # the last operation number handed out
        self._op: int | None = None  # the operation in progress
        self._op_done = 0  # the last operation that ended
        self._in_flight: int | None = None  # the operation whose user-code request the worker holds
        self._int_pending: int | None = None  # interrupted before its request was sent
        self._interrupt_at: float | None = None

    @property
    def next_operation(self) -> int:
        """The number the next operation gets: name it to interrupt that one even before it starts."""
        return self._ticket + 1

    @property
    def current_operation(self) -> int | None:
        """The operation in progress, or None."""
        return self._op

    @property
    def interrupted(self) -> bool:
        """Whether an interrupt reached the last (or the running) request."""
        return self._interrupt_at is not None

    def interrupt(self, operation: int | None = None) -> bool:
        """Interrupt ``operation`` (default: the one in progress); False when it ended or none runs."""
        with self._int_lock:
            target = self._op if operation is None else operation
            if target is None or target <= self._op_done or target > self._ticket + 1:
                return False
            if self._in_flight == target:
                self._signal_worker()
            else:
                self._int_pending = target
            return True

    def _signal_worker(self) -> None:
        """SIGINT to the worker (called with ``_int_lock`` held, its operation's request in flight)."""
        worker = self.worker
        if worker is not None:
            self._interrupt_at = time.monotonic()
            worker.send_signal(signal.SIGINT)

    def operation(self, *, new: bool = True) -> _Operation:
        """Hold the session for one operation (re-entered by the requests it makes); ``as`` gives its number.

        ``new=False`` (a request of the shell's own) joins the operation in progress, if any, or
        holds the session as no operation (0): an interrupt meanwhile is for nothing.
        """
        return _Operation(self, new)

    def _cancelled_before_send(self, op: int) -> bool:
        """True (and the interrupt consumed) when ``op`` was interrupted before its request went out."""
        with self._int_lock:
            if self._int_pending != op:
                return False
            self._int_pending = None
            self._interrupt_at = time.monotonic()
            return True

    def _sent(self, op: int) -> None:
        """``op``'s user-code request is with the worker: an interrupt that came meanwhile is sent now."""
        with self._int_lock:
            self._in_flight = op
            if self._int_pending == op:
                self._int_pending = None
                self._signal_worker()

    def _replied(self) -> None:
        """The request's reply was read (or it failed): no SIGINT for it from here on."""
        with self._int_lock:
            self._in_flight = None


class _Operation:
    """:meth:`InterruptBinding.operation` (a class, not a generator: it is on every call's path)."""

    __slots__ = ("new", "op", "session")

    def __init__(self, session: InterruptBinding, new: bool) -> None:
        self.session, self.new, self.op = session, new, 0

    def __enter__(self) -> int:
        s = self.session
        s._lock.acquire()
        if s._op is not None or not self.new:  # only the lock's holder sets it: this thread's own
            self.new = False
            return s._op or 0
        with s._int_lock:
            s._ticket += 1
            self.op = s._op = s._ticket
        return self.op

    def __exit__(self, *exc: object) -> None:
        s = self.session
        try:
            if self.new:
                with s._int_lock:
                    s._op, s._op_done, s._in_flight = None, self.op, None
                    if s._int_pending is not None and s._int_pending <= self.op:
                        s._int_pending = None
        finally:
            s._lock.release()
