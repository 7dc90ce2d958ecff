"""The client's entry points besides the executor (client side, host): one call, a local cluster, doctor.

:func:`sandboxed_submit` runs one call through a default
:class:`~.executor.SandboxedExecutor` per client; :func:`local_cluster` is
the 127.0.0.1-only ``LocalCluster`` of ``glsandbox run --cluster local:N``,
the tests and the benchmarks; :func:`cluster_doctor` asks every worker's
plugin for ``glsandbox doctor`` and its sessions.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import weakref
from collections.abc import Callable
from typing import Any

import distributed

from ..config import OSSandboxConfig
from .executor import SandboxedExecutor
from .plugin import run_on_worker_health

_DEFAULT: weakref.WeakKeyDictionary[Any, SandboxedExecutor] = weakref.WeakKeyDictionary()
_DEFAULT_LOCK = threading.Lock()


def sandboxed_submit(
    client: distributed.Client,
    fn: Callable[..., Any],
    /,
    *args: Any,
    config: OSSandboxConfig | None = None,
    executor: SandboxedExecutor | None = None,
    **kwargs: Any,
) -> cf.Future[Any]:
    """Run ``fn(*args, **kwargs)`` in a sandbox on ``client``'s cluster; a ``concurrent.futures.Future``.

    Uses ``executor`` when given, else one default executor per client
    (in-memory run chain: ``default_executor(client).audit``).
    """
    if executor is None:
        executor = default_executor(client)
    return executor.submit_many(fn, [(args, kwargs)], config=config)[0]


def default_executor(client: distributed.Client) -> SandboxedExecutor:
    """The executor :func:`sandboxed_submit` uses for ``client`` (made on first use)."""
    with _DEFAULT_LOCK:
        executor = _DEFAULT.get(client)
        if executor is None or executor._shutdown:
            executor = _DEFAULT[client] = SandboxedExecutor(client)
        return executor


def local_cluster(n_workers: int, *, processes: bool = True, **kwargs: Any) -> distributed.LocalCluster:
    """A ``LocalCluster`` of ``n_workers`` processes (or, without ``processes``, worker threads
    in this process), one thread each, listening on 127.0.0.1 only.

    No dashboard, and the scheduler's HTTP endpoint on a free port (not 8787,
    which another cluster on this machine may hold). Used by ``glsandbox run
    --cluster local:N``, the tests and the benchmarks (client side).
    """
    options: dict[str, Any] = {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": processes,
        "dashboard_address": None,
        "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
        **kwargs,
    }
    if processes:
        options.setdefault("host", "127.0.0.1")  # worker threads talk in-process (inproc://)
    return distributed.LocalCluster(**options)


def cluster_doctor(client: distributed.Client, *, doctor: bool = True) -> dict[str, dict[str, Any]]:
    """``glsandbox doctor`` and the plugin's sessions on every worker, by worker address (client side)."""
    reports: dict[str, dict[str, Any]] = client.run(run_on_worker_health, doctor=doctor)
    return reports
