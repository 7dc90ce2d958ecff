"""Workers started, killed and started again, as an unprivileged user (uid 65534, rootless).

As uid 65534 a BASIC worker shares its real uid with the host process, the
zygote, the warm pool's spares, the previous worker still being torn down
and every other process of that user; ``RLIMIT_NPROC`` counts them all. A
worker restarted after a kill used to die in set-up (exit code 70, no
message): it had no task left for its own fd forwarder thread. These tests
start, kill (SIGKILL from outside) and restart BASIC and NAMESPACE workers
many times and assert that every start works; a set-up failure must reach
the host as a ConfinementError naming the step, the call and errno.

Run as root, :func:`test_restarts_as_unprivileged_user` runs this file again
as uid 65534 (the harness in tests/conftest.py); the other tests run
as whoever runs pytest.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import socket
import sys
import time

import pytest

from glsandbox_kernel import OSSandbox
from glsandbox_kernel.backends.basic import BasicBackend
from glsandbox_kernel.backends.namespace import NamespaceBackend
from glsandbox_kernel.config import IsolationType, create_config_by_level
from glsandbox_kernel.exceptions import ConfinementError
from glsandbox_kernel.zygote import get_zygote

from ..conftest import rerun_as_unprivileged, wait_gone

INNER = os.environ.get("GLSANDBOX_TEST_UNPRIVILEGED") == "1"
CYCLES = 25
#: A cell whose worker holds threads when it is killed: its tasks count until they are gone.
BUSY_CELL = (
    "import threading, time\n"
    "threading.stack_size(1 << 18)\n"
    "for _ in range(8):\n"
    "    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()\n"
    "import os\n"
    "print(os.getuid())\n"
)


def _cycle(iso: IsolationType, level: str) -> None:
    """Start, SIGKILL from outside, start again: every start must work."""
    sb = OSSandbox(create_config_by_level(level, isolation_type=iso))
    failures: list[str] = []
    try:
        for i in range(CYCLES):
            res = sb.run_cell(BUSY_CELL)
            if res.status != "ok":
                failures.append(f"cycle {i}: {res.error_name}: {res.error_value}")
                continue
            pids = sb.worker_pids
            assert pids, "a running worker has host pids"
            for pid in reversed(pids):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            assert not wait_gone(pids)
            # The host learns of the death from the zygote: until then a call would go to the dead one.
            for _ in range(2000):
                if not sb.worker_pids:
                    break
                time.sleep(0.005)
        assert sb.run_cell("print('last')").status == "ok"
    finally:
        sb.close()
    assert not failures, f"{len(failures)} of {CYCLES} starts after a kill failed (uid {os.getuid()}): {failures[:3]}"


@pytest.mark.parametrize("level", ["strict", "moderate"])
def test_basic_restarts_after_kill(level: str) -> None:
    _cycle(IsolationType.BASIC, level)


@pytest.mark.namespace
def test_namespace_restarts_after_kill() -> None:
    ok, why = NamespaceBackend.available()
    if not ok:
        pytest.skip(f"namespace backend unavailable here: {why}")
    _cycle(IsolationType.NAMESPACE, "strict")


def test_basic_process_limit_is_the_sandboxs_share() -> None:
    """The worker's NPROC limit sits on top of the uid's other tasks (shared uid), and says so."""
    cfg = create_config_by_level("strict", isolation_type=IsolationType.BASIC)
    sb = OSSandbox(cfg)
    try:
        res = sb.execute(_nproc_limit)
    finally:
        sb.close()
    soft, hard = res
    assert soft == hard
    if os.getuid() == 0:
        assert soft == cfg.limits.max_processes  # root's tasks are never counted by the kernel
    else:
        assert soft >= (cfg.limits.max_processes or 0) + 1  # at least the host process itself


def _nproc_limit() -> tuple[int, int]:
    import resource

    return resource.getrlimit(resource.RLIMIT_NPROC)


def test_setup_failure_reaches_host_with_step_call_errno() -> None:
    """A step that fails in the forked child is reported to the host (not just exit code 70)."""
    backend = BasicBackend(create_config_by_level("strict", isolation_type=IsolationType.BASIC))
    plan = backend.child_plan("/nonexistent-glsandbox-dir")
    assert plan.process is not None and plan.process.chdir
    plan = dataclasses.replace(plan, process=dataclasses.replace(plan.process, cwd="/nonexistent-glsandbox-dir"))
    host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    zygote = get_zygote(sys.executable)
    try:
        pid = zygote.spawn(plan.to_wire(), child_end)
    finally:
        child_end.close()
    from glsandbox_kernel.backends.zygote_worker import ZygoteWorker

    worker = ZygoteWorker(zygote=zygote, root_pid=pid, sock=host_end, workdir=None)
    try:
        with pytest.raises(ConfinementError) as info:
            backend.connect(worker, max_frame=1 << 20, timeout=30)
        assert info.value.step == "process"
        assert "chdir('/nonexistent-glsandbox-dir')" in info.value.call
        assert info.value.errno == errno.ENOENT
        assert "No such file or directory (errno 2)" in str(info.value)
        assert worker.wait(10) == 70
    finally:
        worker.kill()
        worker.cleanup()


@pytest.mark.unprivileged
def test_restarts_as_unprivileged_user() -> None:
    proc = rerun_as_unprivileged(__file__, "-rs", "-k", "not test_restarts_as_unprivileged_user", timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
    assert " failed" not in proc.stdout
