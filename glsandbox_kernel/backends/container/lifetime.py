"""No leaks: live containers, background removal, exit hooks, stale sweep (host side).

A closed session's container is waited for (killed after a grace period)
and removed in a background reaper, so neither is on the caller's path;
live containers are removed on interpreter exit (atexit and SIGTERM); for a
host that died hard (SIGKILL), within a second or two by the host-death
watcher (:mod:`.watcher`: every container is registered with it at its
create, and this host's labels before it) and the bootstrap's own watchdog on its host connection, and as a
last resort by :func:`sweep_stale` at the next start-up (by label
``glsandbox=1`` and the recorded host: :mod:`.owner`). A forked child forgets its parent's containers and never
kills them. Warm pools register their drain here (:func:`on_shutdown`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..reaper import reaper
from . import docker_api, owner
from .watcher import WATCHER

if TYPE_CHECKING:
    from .worker import ContainerWorker

log = logging.getLogger("glsandbox.container")


def _remove_later(container_id: str) -> None:
    queued = time.monotonic()

    def job() -> None:
        for wait in _before_removal:
            wait(queued + REMOVAL_DELAY_MAX)
        remove_and_forget(container_id)

    _reaper.submit(job, key=container_id)


def remove_and_forget(container_id: str) -> None:
    """Remove the container now; the host-death watcher need not remove it any more."""
    docker_api.remove_now(container_id)
    WATCHER.forget(container_id)


#: Called on the reaper thread before each removal with a deadline (monotonic): the warm
#: pool's wait for a pause in a burst of takes, so removals do not compete with the
#: sessions taking. A removal runs at most REMOVAL_DELAY_MAX s after it was queued
#: (a steady stream of takes delays removals, it never piles them up).
_before_removal: list[Callable[[float], None]] = []
REMOVAL_DELAY_MAX = 2.0


#: Container removals run on the shared reaper thread, off the caller's path.
_reaper = reaper("glsandbox-container-reaper")
_live: dict[str, ContainerWorker] = {}
_drains: list[Callable[[], None]] = []
_forgets: list[Callable[[], None]] = []
_hooks_installed = False
_sweep_started = False


def on_shutdown(drain: Callable[[], None], forget: Callable[[], None]) -> None:
    """Register a warm pool's ``drain`` (exit, SIGTERM) and ``forget`` (forked child)."""
    _drains.append(drain)
    _forgets.append(forget)


def track(worker: ContainerWorker) -> None:
    """A container just started: kill it at exit unless it ends first."""
    _install_exit_hooks()
    _sweep_once_in_background()
    _live[worker.container_id] = worker


def release(container_id: str) -> None:
    """The worker ended and was cleaned up: queue the container's removal."""
    _live.pop(container_id, None)
    _remove_later(container_id)


def retire_later(worker: ContainerWorker, grace: float) -> None:
    """A closed session's container: wait ``grace`` for it to end, kill it if not, clean up (reaper thread)."""

    def job() -> None:
        if worker.wait(grace) is None:
            worker.kill()
        worker.cleanup()

    _reaper.submit(job, key=worker.container_id)


def release_proxy(proxy: Any, proxy_dir: str | None) -> None:
    """Stop a finished container's network proxy and remove its directory, in the background."""

    def job() -> None:
        proxy.stop()
        if proxy_dir is not None:
            shutil.rmtree(proxy_dir, ignore_errors=True)

    _reaper.submit(job)


def flush_removals(timeout: float = 30.0) -> bool:
    """Wait for background removals (tests and benchmarks call this)."""
    return _reaper.flush(timeout)


def _install_exit_hooks() -> None:
    """atexit and (when nobody else handles it) SIGTERM: kill and remove our containers."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(shutdown_all)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    shutdown_all(timeout=5.0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def shutdown_all(timeout: float = 20.0) -> None:
    """Drain the warm pools, kill every live container of ours, wait for removal.

    Runs at interpreter exit and on SIGTERM; touches only containers this
    process made (a forked child leaves its parent's alone, see _after_fork).
    """
    for drain in list(_drains):
        with contextlib.suppress(Exception):
            drain()
    for worker in list(_live.values()):
        if worker.owner_pid != os.getpid():
            continue
        with contextlib.suppress(Exception):
            worker.kill()
            worker.cleanup()
    if _reaper.flush(timeout) and not _live:
        WATCHER.unexpect()  # all removed: the helper need not list this host's containers
    WATCHER.close()  # EOF: the helper removes whatever the hooks could not


def _after_fork() -> None:
    """In a forked child: forget the parent's client, containers and pools (never kill them)."""
    global _sweep_started
    docker_api.forget_client()
    _live.clear()
    _reaper.reset_after_fork()
    _sweep_started = True
    for forget in list(_forgets):
        forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def sweep_stale() -> list[str]:
    """Remove containers of ours whose host process is gone; returns their ids (HOST side).

    Listed by label ``glsandbox=1``, judged one by one by :func:`.owner.stale`:
    only this user's containers made on this machine, by a host of an
    earlier boot or of this boot and pid namespace whose pid and start time
    no longer name a live process. Another machine's or user's on a shared
    engine, and those of older versions (no boot or machine label), are
    never touched.
    """
    removed: list[str] = []
    with docker_api.map_docker_errors("container", "list containers"):
        listed = docker_api.api().containers(all=True, filters={"label": f"{owner.LABEL}=1"})
    for c in listed:
        if not owner.stale(c.get("Labels") or {}):
            continue
        docker_api.remove_now(c["Id"])
        removed.append(c["Id"])
    if removed:
        log.info("removed %d stale sandbox container(s)", len(removed))
    return removed


def _sweep_once_in_background() -> None:
    global _sweep_started
    if _sweep_started:
        return
    _sweep_started = True

    def run() -> None:
        with contextlib.suppress(Exception):
            sweep_stale()

    threading.Thread(target=run, name="glsandbox-container-sweep", daemon=True).start()
