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
:func:`set_pool_size`. Who calls: :class:`~.container.ContainerBackend` (and
GVISOR through it); tests and benchmarks use :func:`drain_all`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .container import lifetime
from .pool import CONTAINER_POLICY, PoolGroup, WarmPool

if TYPE_CHECKING:
    from .container.worker import ContainerWorker

ENV_POOL_SIZE = CONTAINER_POLICY.env_var
DEFAULT_POOL_SIZE = CONTAINER_POLICY.default_size
MAX_POOLS = CONTAINER_POLICY.max_keys

_GROUP: PoolGroup[ContainerWorker] = PoolGroup(CONTAINER_POLICY)


def pool_size() -> int:
    """Containers kept warm per pool key (override, then env var, then default)."""
    return _GROUP.size()


def set_pool_size(size: int | None) -> None:
    """Override the pool size for this process (None: back to the env var/default; 0 drains)."""
    _GROUP.set_size(size)


def get_pool(key: str, launcher: Callable[[], ContainerWorker]) -> WarmPool[ContainerWorker]:
    """The pool for ``key`` (made on first use); beyond MAX_POOLS the least recently used is drained."""
    return _GROUP.get(key, launcher)


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

__all__ = [
    "DEFAULT_POOL_SIZE",
    "ENV_POOL_SIZE",
    "MAX_POOLS",
    "drain_all",
    "forget_all",
    "get_pool",
    "pool_size",
    "pools",
    "set_pool_size",
]
