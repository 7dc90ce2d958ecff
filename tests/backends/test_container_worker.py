"""ContainerWorker.wait is well-defined at any time, after cleanup and while cleanup runs.

Cleanup closes the worker's pidfds; a later ``wait()`` returns the exit
status it had (no exception, no select on a closed descriptor), and a
``wait()`` blocked in another thread when cleanup kills the container
returns that status too. A host with over a thousand open files (pidfds
numbered past select's limit) still waits. Real containers (CONTAINER and
GVISOR), judged from the engine's own listing afterwards.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from glsandbox_kernel.backends.container import LABEL_HOST_PID, ContainerWorker, docker_api, flush_removals
from glsandbox_kernel.backends.container import warm as docker_pool
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.config import IsolationType, OSSandboxConfig

pytestmark = [pytest.mark.container]


@contextlib.contextmanager
def _started(name: str) -> Iterator[ContainerWorker]:
    """A started worker of backend ``name`` (no warm pool); nothing of this process's is left afterwards."""
    backend_cls = backends()[name]
    ok, why = backend_cls.available()
    if not ok:
        pytest.skip(f"{name}: {why}")
    docker_pool.set_pool_size(0)
    started = backend_cls(OSSandboxConfig(isolation_type=IsolationType(name), execution_timeout=30.0)).start(
        session_id="wait-after-cleanup"
    )
    try:
        assert isinstance(started, ContainerWorker)
        yield started
    finally:
        started.cleanup()
        docker_pool.set_pool_size(None)
        assert flush_removals(30), "container removals did not finish"
        labels = {"label": f"{LABEL_HOST_PID}={os.getpid()}"}
        assert docker_api.api().containers(all=True, filters=labels) == []


@pytest.fixture(params=["container", "gvisor"])
def worker(request: pytest.FixtureRequest) -> Iterator[ContainerWorker]:
    with _started(request.param) as started:
        yield started


def test_wait_after_cleanup_returns_the_exit_status(worker: ContainerWorker) -> None:
    worker.send_signal(signal.SIGTERM)  # the worker has no handler: it ends
    code = worker.wait(30)
    assert code is not None
    worker.cleanup()
    assert worker.wait() == code
    assert worker.wait(0) == code
    assert worker.poll() == code


def test_wait_after_cleanup_of_a_running_worker_is_its_kill(worker: ContainerWorker) -> None:
    assert worker.poll() is None
    worker.cleanup()  # kills it first
    assert worker.wait() == -signal.SIGKILL
    assert worker.wait(0) == -signal.SIGKILL


def test_a_wait_in_another_thread_returns_when_cleanup_ends_the_worker(worker: ContainerWorker) -> None:
    got: dict[str, Any] = {}
    entered = threading.Event()

    def waiter() -> None:
        entered.set()
        try:
            got["code"] = worker.wait()  # no timeout: only the worker's end returns it
        except BaseException as exc:  # noqa: BLE001 - the assertion below shows it
            got["error"] = exc

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    entered.wait()
    worker.cleanup()
    thread.join(30)
    assert not thread.is_alive(), "wait() did not return once cleanup ended the worker"
    assert got == {"code": -signal.SIGKILL}


@contextlib.contextmanager
def _fds_past_1023() -> Iterator[None]:
    """Descriptors 0..1050 in use while the block runs: every new one is numbered past select's limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    fillers: list[int] = []
    try:
        while not fillers or fillers[-1] < 1050:
            fillers.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(params=["container", "gvisor"])
def busy_host_worker(request: pytest.FixtureRequest) -> Iterator[ContainerWorker]:
    """A worker started, and waited for, while the host has over a thousand files open."""
    with _fds_past_1023(), _started(request.param) as started:
        yield started


def test_wait_without_timeout_waits_when_the_pidfds_are_numbered_past_1023(busy_host_worker: ContainerWorker) -> None:
    ender = threading.Timer(0.5, busy_host_worker.send_signal, (signal.SIGTERM,))
    ender.start()
    try:
        code = busy_host_worker.wait()  # select(2) refused such descriptors: wait() returned None at once
    finally:
        ender.cancel()
    assert code is not None
    assert code == busy_host_worker.exit_info().returncode
