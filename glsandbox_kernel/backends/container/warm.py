"""Warm pool of pre-started container workers (host side), on the generic pool.

Each pooled container is already running its worker, connected to the host
and blocked reading its first request, so a fresh container sandbox costs no
Docker call at all. A container is handed to exactly one session and
destroyed after it, never reused. The pool itself is the generic one
(:mod:`glsandbox_kernel.backends.pool`) with :data:`~.pool.CONTAINER_POLICY`;
this module keeps the container backends' group of pools, keyed by
everything that matters in the container's settings
(:func:`~.container.settings.settings_key`), and drains it at interpreter
exit (registered with :mod:`.container.lifetime`).

Size: ``GLSANDBOX_CONTAINER_POOL`` (default 2; 0 turns pooling off) or
:func:`set_pool_size` is the floor. To keep up with sessions that follow
each other, the size a pool refills to adapts to the rate of takes: about
rate x launch time (both measured here, the launch time as a moving
average) plus one, held for :data:`HOLD` seconds (a burst provisions the
next one), never above :data:`MAX_ADAPTIVE`; the policy starts up to
:data:`PARALLEL` containers at once. When the takes stop, the size falls
back to the floor (idle extras wait for their session or the drain;
nothing above the maximum is ever made). A burst's refill waits for a pause
in the takes while the pool still has containers to hand out
(:data:`LOW_WATER`, :data:`QUIET`), and so do the removals of the
containers the burst's sessions closed (each at most 2 s after its close).
Who calls: :class:`~.container.ContainerBackend` (and GVISOR through it);
tests and benchmarks use :func:`drain_all`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..pool import CONTAINER_POLICY, PoolGroup, WarmPool
from . import lifetime

if TYPE_CHECKING:
    from .worker import ContainerWorker

ENV_POOL_SIZE = CONTAINER_POLICY.env_var
DEFAULT_POOL_SIZE = CONTAINER_POLICY.default_size
MAX_POOLS = CONTAINER_POLICY.max_keys

#: Containers started at once by a refill (dockerd overlaps their create/start).
PARALLEL = 3
#: The adaptive size's ceiling (memory of idle containers is the cost).
MAX_ADAPTIVE = 8
#: The rate of takes is measured over this many seconds...
RATE_WINDOW = 2.0
#: ...and the size it asked for is held this long (a burst provisions the next one).
HOLD = 30.0
#: A burst is not slowed by its own refill (on two cores the containers being
#: started compete with the sessions taking): while a pool still holds more
#: than LOW_WATER ready containers, its refill waits until no take came for
#: QUIET seconds; at or below it, the refill starts at once.
LOW_WATER = 1
QUIET = 0.15


class _AdaptiveGroup(PoolGroup["ContainerWorker"]):
    """The generic group, with a size that follows the rate of takes (see the module docstring)."""

    def __init__(self) -> None:
        # A take waits for a start under way rather than starting one more cold (which is never faster).
        super().__init__(dataclasses.replace(CONTAINER_POLICY, parallel=PARALLEL, take_wait=30.0))
        self._takes: collections.deque[float] = collections.deque(maxlen=32)
        self._launch_s = 0.5  # moving average of one container's start (s)
        self._peak: tuple[float, int] = (0.0, 0)  # (when, size) of the largest recent want
        self._stats_lock = threading.Lock()
        self._deferred: dict[str, WarmPool[ContainerWorker]] = {}
        self._deferrer: threading.Thread | None = None

    def floor(self) -> int:
        """The configured size (override, env var, default): 0 turns pooling off."""
        return super().size()

    def size(self) -> int:
        floor = self.floor()
        if floor <= 0:
            return 0
        now = time.monotonic()
        with self._stats_lock:
            recent = [t for t in self._takes if now - t <= RATE_WINDOW]
            want = 0
            if len(recent) >= 2:
                rate = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-3)
                want = math.ceil(rate * self._launch_s) + 1
            when, peak = self._peak
            if want >= peak or now - when > HOLD:
                self._peak = (now, want) if want >= peak else (0.0, 0)
            held = max(want, self._peak[1])
        return max(floor, min(held, max(floor, MAX_ADAPTIVE), self.policy.maximum))

    def note_take(self) -> None:
        with self._stats_lock:
            self._takes.append(time.monotonic())

    def forget_rate(self) -> None:
        with self._stats_lock:
            self._takes.clear()
            self._peak = (0.0, 0)

    def note_launch(self, seconds: float) -> None:
        with self._stats_lock:
            self._launch_s = 0.7 * self._launch_s + 0.3 * seconds

    def refill_after_take(self, pool: WarmPool[ContainerWorker]) -> None:
        """Refill now at low water, else once the takes pause (see :data:`QUIET`)."""
        if len(pool) <= LOW_WATER:
            pool.refill()
            return
        with self._stats_lock:
            self._deferred[pool.key] = pool
            if self._deferrer is not None:
                return
            self._deferrer = threading.Thread(target=self._refill_when_quiet, name="glsandbox-container-refill")
            self._deferrer.daemon = True
            self._deferrer.start()

    def _refill_when_quiet(self) -> None:
        while True:
            with self._stats_lock:
                last = self._takes[-1] if self._takes else 0.0
                wait = last + QUIET - time.monotonic()
                if wait <= 0:
                    pools, self._deferred, self._deferrer = list(self._deferred.values()), {}, None
                    break
            time.sleep(min(wait, 0.05))  # QUIET is read afresh each time (tests change it)
        for pool in pools:
            pool.refill()

    def wait_for_pause(self, deadline: float) -> None:
        """Reaper thread, before a removal: wait until no take came for QUIET s, or until ``deadline`` (monotonic)."""
        while True:
            with self._stats_lock:
                last = self._takes[-1] if self._takes else 0.0
            now = time.monotonic()
            wait = min(last + QUIET - now, deadline - now)
            if wait <= 0:
                return
            time.sleep(min(wait, 0.05))

    def forget_all(self) -> None:
        super().forget_all()
        self._stats_lock = threading.Lock()  # a parent's thread may have held it at the fork
        self._deferred, self._deferrer = {}, None


_GROUP = _AdaptiveGroup()


def pool_size() -> int:
    """The configured pool size (override, then env var, then default); the adaptive size never goes below it."""
    return _GROUP.floor()


def adaptive_size() -> int:
    """What a pool refills to now (doctor, benchmarks)."""
    return _GROUP.size()


def note_take() -> None:
    """A session asked for a fresh container (the backend's start): feeds the rate."""
    _GROUP.note_take()


def refill_after_take(pool: WarmPool[ContainerWorker]) -> None:
    """After a take (the backend's start): refill at low water now, else when the takes pause."""
    _GROUP.refill_after_take(pool)


def set_pool_size(size: int | None) -> None:
    """Override the pool size for this process (None: back to the env var/default; 0 drains).

    Also forgets the rate of takes seen so far (the size starts from the floor again).
    """
    _GROUP.forget_rate()
    _GROUP.set_size(size)


def get_pool(key: str, launcher: Callable[[], ContainerWorker]) -> WarmPool[ContainerWorker]:
    """The pool for ``key`` (made on first use); beyond MAX_POOLS the least recently used is drained.

    Each launch is timed for the adaptive size.
    """

    def timed() -> ContainerWorker:
        t0 = time.monotonic()
        worker = launcher()
        _GROUP.note_launch(time.monotonic() - t0)
        return worker

    return _GROUP.get(key, timed)


def pools() -> list[WarmPool[ContainerWorker]]:
    """Every live pool (doctor, tests)."""
    return _GROUP.pools()


def forget_all() -> None:
    """Drop every pool without touching its containers (a forked child; they are the parent's)."""
    _GROUP.forget_all()


def drain_all(*, wait: bool = True) -> None:
    """Drain every pool (interpreter exit, tests, benchmarks)."""
    _GROUP.drain_all(wait=wait)


lifetime.on_shutdown(drain_all, forget_all)
lifetime._before_removal.append(_GROUP.wait_for_pause)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "ENV_POOL_SIZE",
    "MAX_ADAPTIVE",
    "MAX_POOLS",
    "PARALLEL",
    "adaptive_size",
    "drain_all",
    "forget_all",
    "get_pool",
    "note_take",
    "pool_size",
    "pools",
    "refill_after_take",
    "set_pool_size",
]
