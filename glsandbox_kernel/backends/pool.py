"""One generic warm pool of ready workers, keyed by config, with a small policy (HOST side).

A pooled worker is fully started and connected (hello read), handed to
exactly ONE session (:meth:`WarmPool.take`) and destroyed after it, never
reused. Pools are keyed by everything config-dependent (the backend computes
the key) and refill in background threads; at most
:attr:`PoolPolicy.max_keys` keys are kept warm per :class:`PoolGroup`, the
least recently used drained first.

The knobs are one frozen :class:`PoolPolicy`: size (an environment variable
with a default and a maximum), how many keys, backoff after failed starts,
how many workers to start in parallel. :data:`ZYGOTE_POLICY` is the zygote
backends' (``GLSANDBOX_WARM_POOL``), :data:`CONTAINER_POLICY` the container
backends' (``GLSANDBOX_CONTAINER_POOL``).

Who calls: the backends' ``start`` (``PoolGroup.get(key, launcher)``,
``take``, ``refill``); tests and benchmarks (``pooled_pids``, ``settle``,
``drain_all``, ``set_size``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from ..exceptions import BackendUnavailableError

log = logging.getLogger("glsandbox.pool")


class PoolWorker(Protocol):
    """What a pool needs of a worker (both :class:`~.base.WorkerProcess` kinds have it)."""

    def poll(self) -> int | None: ...
    def kill(self) -> None: ...
    def cleanup(self) -> None: ...


W = TypeVar("W", bound=PoolWorker)


def env_pool_size(env_var: str, default: int, maximum: int) -> int:
    """A pool size from ``env_var`` (clamped to ``[0, maximum]``), else ``default``."""
    raw = os.environ.get(env_var, "").strip()
    if not raw:
        return default
    try:
        return max(0, min(maximum, int(raw)))
    except ValueError:
        log.warning("%s=%r is not an integer; using %d", env_var, raw, default)
        return default


@dataclasses.dataclass(frozen=True, kw_only=True)
class PoolPolicy:
    """How a family of pools behaves.

    ``env_var``/``default_size``/``maximum``: workers kept warm per key (0
    turns pooling off). ``max_keys``: distinct keys kept warm at once.
    ``backoff``: seconds times the failure count slept after a failed start;
    after ``max_failures`` in a row the filler gives up until the next
    refill. ``parallel``: workers started at once by a fill. ``take_wait``:
    how long :meth:`WarmPool.take` waits for a fill under way. ``burst``:
    extra workers a pool keeps while it is used back to back (a take that
    leaves it empty), within ``maximum``, until ``burst_idle`` seconds pass
    without such a take. ``label``: thread names and log lines.
    """

    env_var: str
    default_size: int = 1
    maximum: int = 8
    max_keys: int = 3
    backoff: float = 0.2
    max_failures: int = 3
    parallel: int = 1
    take_wait: float = 0.0
    burst: int = 0
    burst_idle: float = 2.0
    label: str = "warm"

    def size(self) -> int:
        """The size from the environment, else the default."""
        return env_pool_size(self.env_var, self.default_size, self.maximum)


ZYGOTE_POLICY = PoolPolicy(
    env_var="GLSANDBOX_WARM_POOL",
    default_size=1,
    maximum=8,
    max_keys=3,
    backoff=0.2,
    parallel=2,
    take_wait=10.0,
    burst=2,
    label="warm",
)
CONTAINER_POLICY = PoolPolicy(
    env_var="GLSANDBOX_CONTAINER_POOL", default_size=2, maximum=32, max_keys=4, backoff=0.5, label="container"
)


def discard(worker: PoolWorker) -> None:
    """Kill and clean up a worker no session will get."""
    with contextlib.suppress(Exception):
        worker.kill()
    with contextlib.suppress(Exception):
        worker.cleanup()


class WarmPool(Generic[W]):
    """Ready workers for one key, refilled in the background.

    ``launcher()`` starts one worker and connects it (hello read), blocking;
    it raises on failure and cleans up after itself. ``size`` overrides
    ``policy.size`` (a :class:`PoolGroup` passes its own, which honours
    :meth:`PoolGroup.set_size`).
    """

    def __init__(
        self,
        key: str,
        launcher: Callable[[], W],
        policy: PoolPolicy = ZYGOTE_POLICY,
        *,
        size: Callable[[], int] | None = None,
    ) -> None:
        self.key = key
        self.policy = policy
        self._launcher = launcher
        self._size = size or policy.size
        self._ready: collections.deque[W] = collections.deque()
        self._cond = threading.Condition()
        self._fillers: list[threading.Thread] = []
        self._starting = 0
        self._closed = False
        self._failures = 0
        self._burst_until = 0.0
        self._trim_timer: threading.Timer | None = None
        self.last_error: BaseException | None = None
        #: How many workers :meth:`take` handed out (tests, doctor).
        self.handed_out = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready)

    @property
    def closed(self) -> bool:
        return self._closed

    def size(self) -> int:
        """Workers to keep ready now: the configured size, plus the burst while used back to back."""
        base = self._size()
        if base > 0 and self.policy.burst and time.monotonic() < self._burst_until:
            return min(self.policy.maximum, base + self.policy.burst)
        return base

    def _filling(self) -> bool:
        self._fillers = [t for t in self._fillers if t.is_alive()]
        return bool(self._fillers)

    def take(self, wait: float | None = None) -> W | None:
        """A ready worker, removed from the pool for good, or None (start one cold).

        With the pool empty while a fill is under way, waits up to ``wait``
        (default ``policy.take_wait``) seconds for it.
        """
        deadline = time.monotonic() + (self.policy.take_wait if wait is None else wait)
        while True:
            with self._cond:
                if not self._ready and self._filling():  # used faster than it refills: keep more ready
                    self._burst_until = time.monotonic() + self.policy.burst_idle
                    self._arm_trim(self.policy.burst_idle)
                    self.refill()  # the condition's lock is re-entrant
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
            discard(worker)  # died while idle (template gone, daemon restart, killed from outside)

    def _arm_trim(self, delay: float) -> None:
        """Under the lock: once the burst is over, give back the workers beyond the size."""
        if self._trim_timer is None or not self._trim_timer.is_alive():
            self._trim_timer = threading.Timer(delay, self._trim)
            self._trim_timer.name = f"glsandbox-{self.policy.label}-trim"
            self._trim_timer.daemon = True
            self._trim_timer.start()

    def _trim(self) -> None:
        extra: list[W] = []
        with self._cond:
            self._trim_timer = None
            left = self._burst_until - time.monotonic()
            if left > 0 and not self._closed:
                self._arm_trim(left)  # still used back to back
                return
            while len(self._ready) > self.size():
                extra.append(self._ready.pop())
        for worker in extra:
            discard(worker)

    def refill(self) -> None:
        """Start background fillers if the pool is below size (non-blocking)."""
        with self._cond:
            if self._closed:
                return
            missing = self.size() - len(self._ready) - self._starting
            running = len([t for t in self._fillers if t.is_alive()])
            for _ in range(max(0, min(missing, self.policy.parallel - running))):
                t = threading.Thread(
                    target=self._fill, name=f"glsandbox-{self.policy.label}-{self.key[:8]}", daemon=True
                )
                self._fillers.append(t)
                t.start()
            self._filling()

    def _fill(self) -> None:
        while True:
            with self._cond:
                if self._closed or len(self._ready) + self._starting >= self.size():
                    self._cond.notify_all()
                    return
                self._starting += 1
            try:
                worker = self._launcher()
            except Exception as exc:  # noqa: BLE001 - recorded; sessions then start cold
                with self._cond:
                    self._starting -= 1
                    self.last_error = exc
                    self._failures += 1
                    failures = self._failures
                    self._cond.notify_all()
                log.warning("%s pool %s: could not start a worker: %s", self.policy.label, self.key[:8], exc)
                # A backend that cannot run this config will not start on a retry either.
                if failures >= self.policy.max_failures or isinstance(exc, BackendUnavailableError):
                    return
                time.sleep(self.policy.backoff * failures)
                continue
            with self._cond:
                self._starting -= 1
                self._failures = 0
                keep = not self._closed
                if keep:
                    self._ready.append(worker)
                self._cond.notify_all()
            if not keep:
                discard(worker)
                return

    def wait_ready(self, count: int | None = None, timeout: float = 30.0) -> bool:
        """Block until ``count`` (default: the pool size) workers are ready (tests, benchmarks)."""
        want = self._size() if count is None else count
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
        deadline = time.monotonic() + timeout
        for t in list(self._fillers):
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
                if t.is_alive():
                    return False
        return True

    def idle(self) -> list[W]:
        """The idle workers (a snapshot)."""
        with self._cond:
            return list(self._ready)

    def pids(self) -> set[int]:
        """Host pids of every process of the idle workers (those that expose ``host_pids()``)."""
        out: set[int] = set()
        for worker in self.idle():
            host_pids = getattr(worker, "host_pids", None)
            if host_pids is not None:
                out.update(host_pids())
        return out

    def drain(self, *, wait: bool = True) -> None:
        """Stop refilling and destroy every idle worker (and, with ``wait``, the ones being made)."""
        with self._cond:
            self._closed = True
            if self._trim_timer is not None:
                self._trim_timer.cancel()
            ready, self._ready = list(self._ready), collections.deque()
            self._cond.notify_all()
        for worker in ready:
            discard(worker)
        if wait:
            self.settle()


class PoolGroup(Generic[W]):
    """Every pool of one family (one policy), by key, least recently used evicted first."""

    def __init__(self, policy: PoolPolicy) -> None:
        self.policy = policy
        self._override: int | None = None
        self._pools: collections.OrderedDict[str, WarmPool[W]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def size(self) -> int:
        """Workers kept warm per key: :meth:`set_size`, else the policy's env variable, else its default."""
        return self._override if self._override is not None else self.policy.size()

    def set_size(self, size: int | None) -> None:
        """Override the size for this process (None: back to the env var/default); 0 drains."""
        self._override = None if size is None else max(0, min(self.policy.maximum, int(size)))
        if self._override == 0:
            self.drain_all()

    def get(self, key: str, launcher: Callable[[], W]) -> WarmPool[W]:
        """The pool for ``key`` (made on first use); beyond ``max_keys`` the least recently used is drained."""
        evicted: list[WarmPool[W]] = []
        with self._lock:
            pool = self._pools.get(key)
            if pool is None or pool.closed:
                pool = self._pools[key] = WarmPool(key, launcher, self.policy, size=self.size)
            self._pools.move_to_end(key)
            while len(self._pools) > self.policy.max_keys:
                evicted.append(self._pools.popitem(last=False)[1])
        for old in evicted:
            threading.Thread(target=old.drain, name=f"glsandbox-{self.policy.label}-evict", daemon=True).start()
        return pool

    def pools(self) -> list[WarmPool[W]]:
        """Every live pool (tests, doctor)."""
        with self._lock:
            return list(self._pools.values())

    def pooled_pids(self) -> set[int]:
        """Host pids of every idle pooled worker's processes."""
        out: set[int] = set()
        for pool in self.pools():
            out |= pool.pids()
        return out

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until no pool is filling (tests: before counting processes)."""
        return all([pool.settle(timeout) for pool in self.pools()])

    def drain_all(self, *, wait: bool = True) -> None:
        """Drain every pool: interpreter exit, template death, tests, benchmarks."""
        with self._lock:
            all_pools = list(self._pools.values())
            self._pools.clear()
        for pool in all_pools:
            pool.drain(wait=wait)

    def forget_all(self) -> None:
        """Drop every pool without touching its workers (a forked child: they are the parent's)."""
        self._lock = threading.Lock()
        self._pools.clear()


__all__ = [
    "CONTAINER_POLICY",
    "ZYGOTE_POLICY",
    "PoolGroup",
    "PoolPolicy",
    "PoolWorker",
    "WarmPool",
    "discard",
    "env_pool_size",
]
