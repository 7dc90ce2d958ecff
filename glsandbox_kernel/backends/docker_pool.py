"""Warm pool of pre-started container workers (host side).

Each pooled container is already running its worker, connected to the host
and blocked reading its first request, so a fresh container sandbox costs no
Docker call at all. A container is handed to exactly one session
(:meth:`WarmPool.take`) and destroyed after it, never reused. Pools are keyed
by everything that matters in the container's settings (image, limits,
runtime, binds, environment: :func:`~.container.settings_key`), refill in one
background thread each and are drained at interpreter exit.

Size: ``GLSANDBOX_CONTAINER_POOL`` (default 2; 0 turns pooling off) or
:func:`set_pool_size`; at most ``MAX_POOLS`` keys are kept warm (least
recently used drained first). Who calls: :class:`~.container.ContainerBackend` (and
GVISOR through it); tests and benchmarks use :func:`drain_all`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .container import ContainerWorker

from .pool import env_pool_size

log = logging.getLogger("glsandbox.container.pool")

ENV_POOL_SIZE = "GLSANDBOX_CONTAINER_POOL"
DEFAULT_POOL_SIZE = 2
MAX_POOL_SIZE = 32
MAX_POOLS = 4  # distinct settings keys kept warm at once

_size_override: int | None = None
_pools: collections.OrderedDict[str, WarmPool] = collections.OrderedDict()
_pools_lock = threading.Lock()


def pool_size() -> int:
    """Containers kept warm per pool key (override, then env var, then default)."""
    if _size_override is not None:
        return _size_override
    return env_pool_size(ENV_POOL_SIZE, DEFAULT_POOL_SIZE, MAX_POOL_SIZE)


def set_pool_size(size: int | None) -> None:
    """Override the pool size for this process (None: back to the env var/default)."""
    global _size_override
    _size_override = None if size is None else max(0, min(MAX_POOL_SIZE, int(size)))


class WarmPool:
    """Ready workers for one settings key, refilled by one background thread.

    ``launcher()`` starts one connected :class:`ContainerWorker` (blocking).
    """

    def __init__(self, key: str, launcher: Callable[[], ContainerWorker], *, label: str = "container") -> None:
        self.key = key
        self.label = label
        self._launcher = launcher
        self._ready: collections.deque[ContainerWorker] = collections.deque()
        self._cond = threading.Condition()
        self._filler: threading.Thread | None = None
        self._closed = False
        self._failures = 0
        self.last_error: BaseException | None = None
        self.handed_out = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready)

    def take(self) -> ContainerWorker | None:
        """A ready worker for one session (removed from the pool), or None."""
        while True:
            with self._cond:
                if self._closed or not self._ready:
                    return None
                worker = self._ready.popleft()
            if worker.poll() is None:
                worker.pooled = True
                self.handed_out += 1
                return worker
            # Died while waiting (daemon restart, OOM at idle): discard it.
            with contextlib.suppress(Exception):
                worker.cleanup()

    def refill(self) -> None:
        """Start the background filler if the pool is below size (non-blocking)."""
        with self._cond:
            if self._closed or (self._filler is not None and self._filler.is_alive()):
                return
            if len(self._ready) >= pool_size():
                return
            self._filler = threading.Thread(target=self._fill, name=f"glsandbox-pool-{self.key[:8]}", daemon=True)
            self._filler.start()

    def _fill(self) -> None:
        while True:
            with self._cond:
                if self._closed or len(self._ready) >= pool_size():
                    return
            try:
                worker = self._launcher()
            except Exception as exc:  # noqa: BLE001 - recorded; sessions then start cold
                self.last_error = exc
                self._failures += 1
                log.warning("warm pool %s: could not start a container: %s", self.key[:8], exc)
                if self._failures >= 3:
                    return
                time.sleep(0.5 * self._failures)
                continue
            self._failures = 0
            with self._cond:
                if self._closed:
                    discard: ContainerWorker | None = worker
                else:
                    self._ready.append(worker)
                    discard = None
                self._cond.notify_all()
            if discard is not None:
                with contextlib.suppress(Exception):
                    discard.cleanup()
                return

    def wait_ready(self, count: int | None = None, timeout: float = 60.0) -> bool:
        """Block until ``count`` (default: the pool size) workers are ready."""
        want = pool_size() if count is None else count
        deadline = time.monotonic() + timeout
        self.refill()
        with self._cond:
            while len(self._ready) < want:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                if self._filler is None or not self._filler.is_alive():
                    self.refill()  # the condition's lock is re-entrant
                self._cond.wait(min(left, 0.2))
        return True

    def drain(self, *, wait: bool = True) -> None:
        """Destroy every unused worker and stop refilling."""
        with self._cond:
            self._closed = True
            ready, self._ready = list(self._ready), collections.deque()
            filler = self._filler
            self._cond.notify_all()
        for worker in ready:
            with contextlib.suppress(Exception):
                worker.kill()
                worker.cleanup()
        if wait and filler is not None and filler is not threading.current_thread():
            filler.join(timeout=10)


def get_pool(key: str, launcher: Callable[[], ContainerWorker], *, label: str = "container") -> WarmPool:
    """The pool for ``key`` (made on first use); beyond MAX_POOLS the least recently used is drained."""
    evicted: list[WarmPool] = []
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool._closed:
            pool = _pools[key] = WarmPool(key, launcher, label=label)
        _pools.move_to_end(key)
        while len(_pools) > MAX_POOLS:
            evicted.append(_pools.popitem(last=False)[1])
    for old in evicted:
        threading.Thread(target=old.drain, name="glsandbox-pool-evict", daemon=True).start()
    return pool


def pools() -> list[WarmPool]:
    """Every live pool (doctor, tests)."""
    with _pools_lock:
        return list(_pools.values())


def forget_all() -> None:
    """Drop every pool without touching its containers (a forked child; they are the parent's)."""
    global _pools_lock
    _pools_lock = threading.Lock()
    _pools.clear()


def drain_all(*, wait: bool = True) -> None:
    """Drain every pool (interpreter exit, tests, benchmarks)."""
    with _pools_lock:
        all_pools = list(_pools.values())
        _pools.clear()
    for pool in all_pools:
        pool.drain(wait=wait)


__all__ = [
    "DEFAULT_POOL_SIZE",
    "ENV_POOL_SIZE",
    "WarmPool",
    "drain_all",
    "forget_all",
    "get_pool",
    "pool_size",
    "set_pool_size",
]
