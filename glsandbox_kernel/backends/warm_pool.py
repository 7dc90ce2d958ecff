"""Warm pool of pre-confined zygote workers (host side).

A pooled worker is fully set up: forked from the zygote, confined by its
whole child plan, in its cgroup, supervisor attached, hello read (the hello
and the seccomp listener stay with the worker until a session takes it). It
is handed to exactly ONE session (:meth:`WarmPool.take`) and destroyed
after it, never reused. Violations its supervisor or proxy record before the
handover are buffered by the worker and delivered to that session.

Pools are keyed by everything config-dependent: the child plan built with
placeholders for the per-worker parts (cgroup name, proxy socket, working
directory), plus the whole config (limits, network, policy) — see
:meth:`~.basic.BasicBackend.pool_key`. Each refills in one background thread
(bounded: ``GLSANDBOX_WARM_POOL`` workers per key, default 1, 0 turns
pooling off; at most :data:`MAX_POOLS` keys, least recently used drained
first). Every pool is drained at interpreter exit and when the zygote dies.

Who calls: :class:`~.basic.BasicBackend` and :class:`~.namespace.NamespaceBackend`
(``start``); tests use :func:`pooled_pids`, :func:`settle` and :func:`drain_all`.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

from .. import zygote as _zygote
from .base import WorkerProcess

log = logging.getLogger("glsandbox.warm_pool")

ENV_POOL_SIZE = "GLSANDBOX_WARM_POOL"
DEFAULT_POOL_SIZE = 1
MAX_POOL_SIZE = 8
MAX_POOLS = 3  # distinct keys kept warm at once

_size_override: int | None = None
_pools: collections.OrderedDict[str, WarmPool] = collections.OrderedDict()
_pools_lock = threading.Lock()


def env_pool_size(env_var: str, default: int, maximum: int) -> int:
    """A pool size from ``env_var`` (clamped to ``[0, maximum]``), else ``default`` (HOST side).

    Shared by the warm pools of the zygote backends and of the container backend.
    """
    raw = os.environ.get(env_var, "").strip()
    if not raw:
        return default
    try:
        return max(0, min(maximum, int(raw)))
    except ValueError:
        logging.getLogger("glsandbox.pool").warning("%s=%r is not an integer; using %d", env_var, raw, default)
        return default


def pool_size() -> int:
    """Workers kept warm per key: :func:`set_pool_size`, else ``GLSANDBOX_WARM_POOL``, else 1."""
    if _size_override is not None:
        return _size_override
    return env_pool_size(ENV_POOL_SIZE, DEFAULT_POOL_SIZE, MAX_POOL_SIZE)


def set_pool_size(size: int | None) -> None:
    """Override the size for this process (None: back to the env var/default); 0 drains."""
    global _size_override
    _size_override = None if size is None else max(0, min(MAX_POOL_SIZE, int(size)))
    if _size_override == 0:
        drain_all()


def _discard(worker: WorkerProcess) -> None:
    """Kill and clean up a worker no session will get."""
    with contextlib.suppress(Exception):
        worker.kill()
    with contextlib.suppress(Exception):
        worker.cleanup()


class WarmPool:
    """Ready workers for one key, refilled by one background thread.

    ``launcher()`` starts one worker and connects it (hello read), blocking;
    it raises on failure and cleans up after itself.
    """

    def __init__(self, key: str, launcher: Callable[[], WorkerProcess]) -> None:
        self.key = key
        self._launcher = launcher
        self._ready: collections.deque[WorkerProcess] = collections.deque()
        self._cond = threading.Condition()
        self._filler: threading.Thread | None = None
        self._closed = False
        self._failures = 0
        self.last_error: BaseException | None = None
        #: How many workers :meth:`take` handed out (tests, doctor).
        self.handed_out = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready)

    @property
    def closed(self) -> bool:
        return self._closed

    def _filling(self) -> bool:
        return self._filler is not None and self._filler.is_alive()

    def take(self, wait: float = 10.0) -> WorkerProcess | None:
        """A ready worker, removed from the pool for good, or None (start one cold).

        With the pool empty while a fill is under way, waits up to ``wait``
        seconds for it: that worker started earlier than a cold one would.
        """
        deadline = time.monotonic() + wait
        while True:
            with self._cond:
                while not self._ready and not self._closed and self._filling():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed or not self._ready:
                    return None
                worker = self._ready.popleft()
                self.handed_out += 1
            if worker.poll() is None:
                return worker
            _discard(worker)  # died while idle (zygote gone, killed from outside)

    def refill(self) -> None:
        """Start the background filler if the pool is below size (non-blocking)."""
        with self._cond:
            if self._closed or self._filling() or len(self._ready) >= pool_size():
                return
            self._filler = threading.Thread(target=self._fill, name=f"glsandbox-warm-{self.key[:8]}", daemon=True)
            self._filler.start()

    def _fill(self) -> None:
        while True:
            with self._cond:
                if self._closed or len(self._ready) >= pool_size():
                    self._cond.notify_all()
                    return
            try:
                worker = self._launcher()
            except Exception as exc:  # noqa: BLE001 - recorded; sessions then start cold
                self.last_error = exc
                self._failures += 1
                log.warning("warm pool %s: could not start a worker: %s", self.key[:8], exc)
                with self._cond:
                    self._cond.notify_all()
                if self._failures >= 3:
                    return
                time.sleep(0.2 * self._failures)
                continue
            self._failures = 0
            with self._cond:
                keep = not self._closed
                if keep:
                    self._ready.append(worker)
                self._cond.notify_all()
            if not keep:
                _discard(worker)
                return

    def wait_ready(self, count: int | None = None, timeout: float = 30.0) -> bool:
        """Block until ``count`` (default: the pool size) workers are ready (tests, benchmarks)."""
        want = pool_size() if count is None else count
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < want:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                if not self._filling():
                    self.refill()  # the condition's lock is re-entrant
                self._cond.wait(min(left, 0.2))
        return True

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until no fill is under way; True if it finished in time."""
        filler = self._filler
        if filler is not None and filler is not threading.current_thread():
            filler.join(timeout)
            return not filler.is_alive()
        return True

    def pids(self) -> set[int]:
        """Host pids of every process of the idle pooled workers."""
        with self._cond:
            ready = list(self._ready)
        out: set[int] = set()
        for worker in ready:
            out.update(worker.host_pids())
        return out

    def drain(self, *, wait: bool = True) -> None:
        """Stop refilling and destroy every idle worker (and, with ``wait``, the one being made)."""
        with self._cond:
            self._closed = True
            ready, self._ready = list(self._ready), collections.deque()
            self._cond.notify_all()
        for worker in ready:
            _discard(worker)
        if wait:
            self.settle()


def get_pool(key: str, launcher: Callable[[], WorkerProcess]) -> WarmPool:
    """The pool for ``key`` (made on first use); beyond :data:`MAX_POOLS` the least recently used is drained."""
    evicted: list[WarmPool] = []
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            pool = _pools[key] = WarmPool(key, launcher)
        _pools.move_to_end(key)
        while len(_pools) > MAX_POOLS:
            evicted.append(_pools.popitem(last=False)[1])
    for old in evicted:
        threading.Thread(target=old.drain, name="glsandbox-warm-evict", daemon=True).start()
    return pool


def pools() -> list[WarmPool]:
    """Every live pool (tests, doctor)."""
    with _pools_lock:
        return list(_pools.values())


def pooled_pids() -> set[int]:
    """Host pids of every idle pooled worker's processes (the tests' leak check skips exactly these)."""
    out: set[int] = set()
    for pool in pools():
        out |= pool.pids()
    return out


def settle(timeout: float = 30.0) -> bool:
    """Wait until no pool is filling (tests: before counting processes)."""
    return all(pool.settle(timeout) for pool in pools())


def drain_all(*, wait: bool = True) -> None:
    """Drain every pool: interpreter exit, zygote death, tests, benchmarks."""
    with _pools_lock:
        all_pools = list(_pools.values())
        _pools.clear()
    for pool in all_pools:
        pool.drain(wait=wait)


def _on_zygote_death(_client: _zygote.ZygoteClient) -> None:
    # Runs on the dead client's reader thread: drain elsewhere (kill() waits on that client).
    threading.Thread(target=drain_all, name="glsandbox-warm-drain", daemon=True).start()


_zygote.on_zygote_death(_on_zygote_death)
atexit.register(drain_all)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "ENV_POOL_SIZE",
    "MAX_POOLS",
    "WarmPool",
    "drain_all",
    "get_pool",
    "pool_size",
    "pooled_pids",
    "pools",
    "set_pool_size",
    "settle",
]
