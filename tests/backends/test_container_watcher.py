"""After a SIGKILL of the host, its containers (session and warm pool) end and are removed.

Two layers, each tested alone: the host-side watcher process
(``backends/container/watcher.py``) removes every container the host
registered once the host is gone; the bootstrap's watchdog thread
(``worker/bootstrap.py``) ends a worker whose host connection closed, even
while its cell runs ``while True: pass``. A child the host forked does not
keep the watcher waiting (it closed its copy of the pipe). Real Docker containers, a real
host process killed by SIGKILL; judged from the engine's own listing.
The VM's QEMU watchdog is the same helper (``backends/host_watch.py``):
it is tested here on plain processes (no guest to boot), judged from /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from glsandbox_kernel.backends.container import docker_api
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.worker.bootstrap import HOST_GONE_EXIT

from ..conftest import live_pids, wait_gone

HOST = r"""
import sys
from glsandbox_kernel import OSSandbox, create_config_by_level, IsolationType
from glsandbox_kernel.backends.container.watcher import WATCHER
sb = OSSandbox(create_config_by_level("strict", isolation_type=IsolationType(sys.argv[1])))
sb.start()
sb.run_cell("1")
print("READY", WATCHER.pid, flush=True)
sb.run_cell("while True:\n    pass")
"""


def _ours(host_pid: int) -> list[dict[str, Any]]:
    found = docker_api.api().containers(all=True, filters={"label": f"glsandbox.host_pid={host_pid}"})
    return list(found)


@contextlib.contextmanager
def _host(code: str, *args: str, containers: bool = True) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """A host running ``code``; yields it and the words of its READY line, then kills it, removes what is left."""
    host = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        word, *words = line.split() or [""]
        assert word == "READY", f"the host did not start: {line!r}"
        yield host, words
    finally:
        host.kill()
        host.wait()
        assert host.stdout is not None
        host.stdout.close()
        for c in _ours(host.pid) if containers else []:
            docker_api.remove_now(c["Id"])


@pytest.fixture(params=["container", "gvisor"])
def killed_host(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A host with a busy session and its warm pool; yields (host, watcher pid) once it is READY."""
    ok, why = backends()[request.param].available()
    if not ok:
        pytest.skip(f"{request.param}: {why}")
    with _host(HOST, request.param) as (host, [watcher]):
        yield host, int(watcher)


def _wait_until(check: Any, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _sigkill_and_wait_for_the_watcher(host: subprocess.Popen[str], watcher: int) -> bool:
    """SIGKILL the host; True once its watcher exited (it does when its removals are done), False after 30 s."""
    host.send_signal(signal.SIGKILL)
    host.wait()
    return not wait_gone([watcher], 30.0)


def test_the_watcher_removes_a_sigkilled_hosts_containers(killed_host: tuple[subprocess.Popen[str], int]) -> None:
    host, watcher = killed_host
    assert len(_ours(host.pid)) >= 2, "the session's and the pool's containers"
    # The watcher exits once its removals are done: then nothing of the host's is left.
    assert _sigkill_and_wait_for_the_watcher(host, watcher), "the watcher outlived its host by 30 s"
    assert _ours(host.pid) == []


def test_the_worker_ends_when_its_host_connection_closes(killed_host: tuple[subprocess.Popen[str], int]) -> None:
    host, watcher = killed_host
    os.kill(watcher, signal.SIGKILL)  # the outside layer is out of the game: the inside one alone
    host.send_signal(signal.SIGKILL)
    host.wait()
    codes: dict[str, int] = {}  # read as they exit (another host's start-up sweep may remove them)

    def all_ended() -> bool:
        listed = _ours(host.pid)
        for c in listed:
            if c["State"] != "running" and c["Status"].startswith("Exited ("):
                codes[c["Id"]] = int(c["Status"][len("Exited (") :].split(")")[0])
        return all(c["State"] != "running" for c in listed)

    left = [(c["Id"][:12], c["State"], c["Status"]) for c in _ours(host.pid)] if not _wait_until(all_ended) else []
    assert not left, f"a worker outlived its host connection by 30 s: {left}"
    # The busy cell never read its socket: only the watchdog ends it (the idle pool ones may see EOF first).
    assert HOST_GONE_EXIT in codes.values(), codes


FORKING_HOST = r"""
import os, sys, time
from glsandbox_kernel import OSSandbox, create_config_by_level, IsolationType
from glsandbox_kernel.backends.container.watcher import WATCHER
sb = OSSandbox(create_config_by_level("strict", isolation_type=IsolationType.CONTAINER))
sb.run_cell("1")
child = os.fork()
if child == 0:  # holds copies of every fd the host had when it forked
    time.sleep(60)
    os._exit(0)
print("READY", WATCHER.pid, child, flush=True)
sb.run_cell("while True:\n    pass")
"""


def test_a_forked_child_does_not_keep_the_watcher_waiting() -> None:
    ok, why = backends()["container"].available()
    if not ok:
        pytest.skip(f"container: {why}")
    child = 0
    try:
        with _host(FORKING_HOST) as (host, [watcher, child_s]):
            child = int(child_s)
            # The child still holds the host's end of the transport sockets (so the
            # sandbox sees no hang-up) but closed its copy of the watcher's pipe.
            assert _sigkill_and_wait_for_the_watcher(host, int(watcher)), "the watcher waited for the forked child"
            assert live_pids([child])
            assert _ours(host.pid) == []
    finally:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


WATCHDOG_HOST = r"""
import os, subprocess, tempfile, time
from glsandbox_kernel.backends.vm.control import WATCHDOG
held, released = (subprocess.Popen(["sleep", "600"], start_new_session=True) for _ in range(2))
rundir = tempfile.mkdtemp(prefix="glsandbox-vm-watchdog-test-")
WATCHDOG.watch(held.pid, rundir, [])
WATCHDOG.watch(released.pid, "", [])
WATCHDOG.forget(released.pid)
child = os.fork()
if child == 0:  # holds copies of every fd the host had when it forked
    time.sleep(60)
    os._exit(0)
print("READY", WATCHDOG.pid, held.pid, released.pid, rundir, child, flush=True)
time.sleep(600)
"""


def test_the_qemu_watchdog_kills_what_a_sigkilled_host_held_despite_a_forked_child() -> None:
    left: list[int] = []
    try:
        with _host(WATCHDOG_HOST, containers=False) as (host, [watchdog, held, released, rundir, child]):
            left = [int(released), int(child)]
            assert os.path.isdir(rundir)
            assert _sigkill_and_wait_for_the_watcher(host, int(watchdog)), "the watchdog waited for the forked child"
            assert not live_pids([int(held)]), "a held process outlived its host's watchdog"
            assert not os.path.exists(rundir)
            assert live_pids(left) == left, "forgotten, or not ours to kill"
    finally:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
