"""After a SIGKILL of the host, its containers (session and warm pool) end and are removed.

Two layers, each tested alone: the host-side watcher process
(``backends/container/watcher.py``) removes every container the host
registered once the host is gone; the bootstrap's watchdog thread
(``worker/bootstrap.py``) ends a worker whose host connection closed, even
while its cell runs ``while True: pass``, and a worker that had not yet
connected ends once it finds its host's socket refused or removed. A child the host forked does not
keep the watcher waiting (it closed its copy of the pipe). Real Docker containers, a real
host process killed by SIGKILL; judged from the engine's own listing.
The VM's QEMU watchdog is the same helper (``backends/host_watch.py``):
it is tested here on plain processes (no guest to boot), judged from /proc.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from glsandbox_kernel import hosttemp
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
busy = sb.session.worker.container_id

def running(msg):  # the busy cell's first output: it runs, and its worker reads its socket no more
    if "BUSY" in str(msg):
        print("READY", WATCHER.pid, busy, flush=True)

sb.run_cell("print('BUSY', flush=True)\nwhile True:\n    pass", on_output=running)
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
def killed_host(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    """A host with a busy session and its warm pool; yields (host, watcher pid, busy container id) once busy."""
    ok, why = backends()[request.param].available()
    if not ok:
        pytest.skip(f"{request.param}: {why}")
    with _host(HOST, request.param) as (host, [watcher, busy]):
        yield host, int(watcher), busy


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


def test_the_watcher_removes_a_sigkilled_hosts_containers(killed_host: tuple[subprocess.Popen[str], int, str]) -> None:
    host, watcher, _busy = killed_host
    assert len(_ours(host.pid)) >= 2, "the session's and the pool's containers"
    # The watcher exits once its removals are done: then nothing of the host's is left.
    assert _sigkill_and_wait_for_the_watcher(host, watcher), "the watcher outlived its host by 30 s"
    assert _ours(host.pid) == []


def _exited_unreaped(pid: int) -> bool:
    """A zombie: its files are closed, but its pid and start time still name a live process to others."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0] == "Z"


def test_the_worker_ends_when_its_host_connection_closes(killed_host: tuple[subprocess.Popen[str], int, str]) -> None:
    host, watcher, busy = killed_host
    os.kill(watcher, signal.SIGKILL)  # the outside layer is out of the game: the inside one alone
    # Not reaped until the end (os.kill, not Popen's send_signal or wait): other hosts'
    # start-up sweeps judge it alive, so its containers end by the inside layer only...
    os.kill(host.pid, signal.SIGKILL)
    assert _wait_until(lambda: _exited_unreaped(host.pid)), "the SIGKILLed host did not exit"
    # ...and its private folders go as the next host's start-up sweep removes a dead
    # host's (hosttemp.sweep): a worker that had not connected finds no socket at all.
    for kind in hosttemp.KINDS:
        for path in glob.glob(os.path.join(tempfile.gettempdir(), f"glsandbox-{kind}{host.pid}.*")):
            hosttemp.remove(path)

    def all_ended() -> bool:
        return all(c["State"] != "running" for c in _ours(host.pid))

    left = [(c["Id"][:12], c["State"], c["Status"]) for c in _ours(host.pid)] if not _wait_until(all_ended) else []
    assert not left, f"a worker outlived its host by 30 s: {left}"
    states = {c["Id"]: docker_api.api().inspect_container(c["Id"])["State"] for c in _ours(host.pid)}
    codes = {cid: state["ExitCode"] for cid, state in states.items()}
    # The busy cell never reads its socket: only the watchdog ends it.
    assert codes.get(busy) == HOST_GONE_EXIT, codes
    # The others, whatever their stage: before connecting (the socket is gone), idle
    # (the loop's EOF, 0, or the watchdog first), or never started (created: 0). A pool
    # container whose start request died with the host (a loaded host is slow to start
    # gVisor's) never ran: the engine records the start's error, no start time, and an
    # exit code of its own (128 on Docker 20.10), none of the worker's.
    never_ran = {cid for cid, state in states.items() if state.get("Error") and state["StartedAt"].startswith("0001-")}
    assert busy not in never_ran
    assert {codes[cid] for cid in codes.keys() - never_ran} <= {0, HOST_GONE_EXIT}, states


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


#: A host SIGKILLed right after the engine made its container, before it saw the answer: the
#: container is created, never started and never registered by id (launch_worker's watch).
CREATE_KILLED_HOST = r"""
import os, signal, sys
from glsandbox_kernel import OSSandbox, create_config_by_level, IsolationType
from glsandbox_kernel.backends.container import docker_api
from glsandbox_kernel.backends.container.watcher import WATCHER
from glsandbox_kernel.backends.registry import backends
ok, why = backends()[sys.argv[1]].available()
if not ok:
    print("SKIP", why, flush=True)
    sys.exit(0)
api = docker_api.api()
create = type(api).create_container

def create_then_die(self, *args, **kwargs):
    made = create(self, *args, **kwargs)
    print("READY", made["Id"], WATCHER.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

type(api).create_container = create_then_die
OSSandbox(create_config_by_level("strict", isolation_type=IsolationType(sys.argv[1]))).start()
"""


def _podman_host() -> str:
    host = os.environ.get("GLSANDBOX_PODMAN_HOST") or "unix://" + os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), ".cache", "podman.sock"
    )
    if not os.path.exists(host.removeprefix("unix://")):
        pytest.skip(f"no Podman service at {host} (scripts/podman-up)")
    return host


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_a_container_created_but_never_started_goes_with_its_sigkilled_host(engine: str) -> None:
    import docker

    env = dict(os.environ, GLSANDBOX_CONTAINER_POOL="0")
    if engine == "podman":
        env["DOCKER_HOST"] = _podman_host()
    api = docker.from_env(environment=env, timeout=30).api
    host = subprocess.Popen(
        [sys.executable, "-c", CREATE_KILLED_HOST, "container"], stdout=subprocess.PIPE, text=True, env=env
    )
    cid = ""
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        word, cid, watcher = [*line.split(), "", "", ""][:3]
        if word == "SKIP":
            cid = ""
            pytest.skip(f"container on {engine}: {line.strip()}")
        assert word == "READY", f"the host did not create: {line!r}"
        host.wait(30)
        assert host.returncode == -signal.SIGKILL
        assert _wait_until(lambda: not api.containers(all=True, filters={"id": cid})), (
            f"{engine}: the created, never started container outlived its SIGKILLed host by 30 s (watcher {watcher})"
        )
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        if cid:
            with contextlib.suppress(Exception):
                api.remove_container(cid, force=True, v=True)
        api.close()
