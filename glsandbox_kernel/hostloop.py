"""One host thread for every session of the process: timers and readable fds (HOST side).

Who calls: the sessions' :class:`~glsandbox_kernel.metrics.Monitor` (a
sample every interval while a call runs) and the audit logs' group commit
(:meth:`~glsandbox_kernel.audit.log.AuditLog.append` schedules a commit for a
log whose caller went idle). Instead of a monitor thread and a committer
thread per session, one daemon thread runs them all.

Fair: timers run in the order they fall due (ties in the order they were
set), and every periodic job sets its next timer only after it ran, so no
session's job runs twice before another due one ran once. Callbacks must be
short (a /proc reading, sealing a few records): they share the thread.

Cheap for callers: setting a timer takes a lock and a heap push; the thread
is woken (one byte on a pipe) only when the new timer falls before the one it
sleeps for. Nothing here runs sandboxed code or reads the worker's frames.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable

log = logging.getLogger("glsandbox.hostloop")


class Timer:
    """A scheduled callback (:meth:`HostLoop.call_at`); :meth:`cancel` stops it running."""

    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class HostLoop:
    """A selector and a timer heap served by one daemon thread, started on first use."""

    def __init__(self, name: str = "glsandbox-hostloop") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._sel: selectors.BaseSelector | None = None
        self._wake_w = -1
        self._thread: threading.Thread | None = None
        #: the instant the thread sleeps until (inf: no timer); None while it runs callbacks
        self._sleep_until: float | None = None
        self._forked = False  # set in a forked child: no os.getpid() on every call_at
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: the next timer starts a thread of its own (the parent's may have held the lock)."""
        self._lock = threading.Lock()
        self._forked = True

    # -- scheduling (any thread) ------------------------------------------------
    def call_at(self, when: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn()`` on the loop thread at ``time.monotonic()`` instant ``when``."""
        timer = Timer(when, fn)
        with self._lock:
            self._ensure_thread()
            heapq.heappush(self._heap, (when, next(self._seq), timer))
            wake = self._sleep_until is not None and when < self._sleep_until
            if wake:
                self._sleep_until = when  # one wake-up byte is enough until it ran
        if wake:
            self._wake()
        return timer

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        return self.call_at(time.monotonic() + delay, fn)

    def add_reader(self, fd: int, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the loop thread whenever ``fd`` is readable (until :meth:`remove_reader`)."""
        with self._lock:
            self._ensure_thread()
            assert self._sel is not None
            self._sel.register(fd, selectors.EVENT_READ, fn)
        self._wake()

    def remove_reader(self, fd: int) -> None:
        with self._lock:
            if self._sel is not None:
                try:
                    self._sel.unregister(fd)
                except (KeyError, ValueError):
                    pass
        self._wake()

    # -- the thread ---------------------------------------------------------------
    def _ensure_thread(self) -> None:
        """Called with the lock held. A forked child gets a thread of its own and none of the
        parent's timers (they belong to the parent's sessions: its audit logs, its monitors)."""
        if self._thread is not None and not self._forked:
            return
        if self._thread is not None:
            self._heap = []
        self._forked = False
        self._sel = selectors.DefaultSelector()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(r, selectors.EVENT_READ, None)
        self._wake_w = w
        self._sleep_until = None
        self._thread = threading.Thread(target=self._run, args=(self._sel, r), name=self.name, daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # a full pipe wakes the thread as well

    def _run(self, sel: selectors.BaseSelector, wake_r: int) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                until = self._heap[0][0] if self._heap else float("inf")
                self._sleep_until = until
            timeout = None if until == float("inf") else max(0.0, until - now)
            try:
                events = sel.select(timeout)
            except OSError:
                events = []
            with self._lock:
                self._sleep_until = None
            for key, _mask in events:
                if key.data is None:
                    try:
                        while os.read(wake_r, 4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                else:
                    _run_one(key.data)
            self._run_due()

    def _run_due(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > now:
                    return
                _, _, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                _run_one(timer.fn)


def _run_one(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        log.exception("host loop callback failed")


#: The process's one loop (sessions, monitors, audit commits).
LOOP = HostLoop()
