"""One background thread that releases what finished sandboxes leave behind (HOST side).

The slow part of a teardown (removing a container, stopping helper threads,
``rmtree`` of a working directory, removing a cgroup) runs here, after the
caller has its result. Only work that cannot leave a process running comes
here: a worker's processes are gone before its cleanup is submitted.

One :class:`Reaper` per kind of work (the zygote backends' janitor, the
container backends' removals); each starts its thread on demand and lets it
end after a few idle seconds. Who calls: the backends (``submit``), tests,
benchmarks and exit hooks (``flush``).
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("glsandbox.reaper")


class Reaper:
    """Runs submitted jobs in order on one daemon thread; :meth:`flush` waits for them.

    A job that raises is logged and does not stop the others. ``key`` names
    a job for :meth:`pending` (e.g. the container id being removed).
    """

    def __init__(self, name: str, *, idle_exit: float = 5.0) -> None:
        self.name = name
        self.idle_exit = idle_exit
        self._todo: collections.deque[tuple[str | None, Callable[[], None]]] = collections.deque()
        self._pending: collections.Counter[str] = collections.Counter()
        self._busy = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None], *, key: str | None = None) -> None:
        """Queue ``job`` (non-blocking); the thread starts if it is not running."""
        with self._cond:
            self._todo.append((key, job))
            self._busy += 1
            if key is not None:
                self._pending[key] += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._todo and not self._cond.wait_for(lambda: bool(self._todo), timeout=self.idle_exit):
                    self._thread = None
                    return
                key, job = self._todo.popleft()
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - one failed removal must not stop the others
                log.warning("%s: background cleanup failed: %s", self.name, exc)
            finally:
                with self._cond:
                    self._busy -= 1
                    if key is not None:
                        self._pending[key] -= 1
                        if self._pending[key] <= 0:
                            del self._pending[key]
                    self._cond.notify_all()

    def pending(self) -> set[str]:
        """Keys of the jobs not yet done."""
        with self._cond:
            return set(self._pending)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted job has run; True if done in time."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout=timeout)

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's queue and thread (they are not ours)."""
        self._todo.clear()
        self._pending.clear()
        self._busy = 0
        self._cond = threading.Condition()
        self._thread = None


_ALL: list[Reaper] = []


def reaper(name: str) -> Reaper:
    """The process-wide reaper called ``name`` (made on first use; flushed at exit)."""
    for r in _ALL:
        if r.name == name:
            return r
    r = Reaper(name)
    _ALL.append(r)
    return r


def flush_all(timeout: float = 10.0) -> bool:
    """Wait for every reaper (tests, interpreter exit); True when all finished in time."""
    return all([r.flush(timeout) for r in list(_ALL)])


atexit.register(flush_all)
