"""One contract for every backend: the registered ones and testing.FakeBackend.

Each parameter is a backend class; a backend that cannot run here skips with
the reason its own ``available()`` gives. Everything runs for real (a real
worker, a real timeout, the real process table): start, execute, run_cell,
state that persists between calls, a timeout that kills the worker tree and
a session that recovers, close leaving no process, metrics that are either
measured or None (never a 0 that was not measured), ``available()`` with a
reason. CHROOT gets a root filesystem made here (mount points only; the
system directories come in read-only).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import OSSandbox
from glsandbox_kernel.backends import registry
from glsandbox_kernel.backends.base import SandboxBackend
from glsandbox_kernel.config import FilesystemConfig, OSSandboxConfig, SandboxMode
from glsandbox_kernel.exceptions import SandboxTimeoutError
from glsandbox_kernel.testing import FakeBackend, fake_backend

from ..conftest import live_pids, wait_gone

cloudpickle.register_pickle_by_value(sys.modules[__name__])

BACKENDS: list[type[SandboxBackend]] = [*(cls for _, cls in sorted(registry.backends().items())), FakeBackend]


@pytest.fixture(params=BACKENDS, ids=lambda cls: cls.name)
def backend(request: pytest.FixtureRequest) -> Iterator[type[SandboxBackend]]:
    cls: type[SandboxBackend] = request.param
    ok, reason = cls.available()
    if not ok:
        pytest.skip(f"{cls.name}: {reason}")
    if cls is FakeBackend:
        with fake_backend():
            yield cls
    else:
        yield cls


def config_for(cls: type[SandboxBackend], rootfs: str, **kw: Any) -> OSSandboxConfig:
    """The default (MODERATE) config on ``cls``; CHROOT with the root made above."""
    profile = getattr(cls, "profile", None)
    if profile is not None and profile.root == "given":  # CHROOT: the root filesystem is the test's to give
        sysdirs = tuple(
            d for d in ("/usr", "/lib", "/lib64", "/bin", "/sbin") if os.path.isdir(d) and not os.path.islink(d)
        )
        kw["filesystem"] = FilesystemConfig(root=rootfs, readonly_paths=sysdirs)
    return OSSandboxConfig(isolation_type=cls.isolation_type, **kw)


def wait_until_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    return wait_gone(pids, timeout=timeout)


def burn(seconds: float) -> int:
    """SANDBOX side: use CPU for ``seconds`` and touch some memory."""
    import time

    data = bytearray(16 * 1024 * 1024)
    for i in range(0, len(data), 4096):
        data[i] = 1
    n = 0
    end = time.process_time() + seconds
    while time.process_time() < end:
        n += 1
    return n


def sleep_for(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "woke"


def test_available_says_why(backend: type[SandboxBackend]) -> None:
    ok, reason = backend.available()
    assert ok is True and isinstance(reason, str) and reason.strip()


def test_unavailable_backends_say_why_too() -> None:
    for cls in BACKENDS:
        ok, reason = cls.available()
        assert isinstance(ok, bool) and isinstance(reason, str) and reason.strip(), cls.name


def test_start_execute_run_cell_state_metrics_and_close(backend: type[SandboxBackend], rootfs: str) -> None:
    box = OSSandbox(config_for(backend, rootfs))
    try:
        box.start()
        assert box.session.backend_cls is backend
        pids = box.worker_pids
        assert pids and live_pids(pids) == pids
        assert box.execute(sum, [1, 2, 3]) == 6
        assert box.execute(burn, 0.3) > 0
        m = box.metrics
        # measured, or None: never a 0 nobody measured
        assert m.cpu_time_used is None or m.cpu_time_used > 0, m
        assert m.memory_peak_bytes is None or m.memory_peak_bytes > 1 << 20, m
        for name in ("disk_read_bytes", "disk_write_bytes", "network_bytes_sent", "network_bytes_received"):
            value = getattr(m, name)
            assert value is None or value >= 0, (name, value)
        assert m.execution_time is not None and m.execution_time > 0
        first = box.run_cell("total = 41")
        assert first.status == "ok", first
        second = box.run_cell("total + 1")
        assert second.status == "ok", second
        results = [o for o in second.outputs if o.get("output_type") == "execute_result"]
        assert results and results[0]["data"]["text/plain"] == "42"  # state persists between cells
        printed = box.run_cell("print('hello from', type(total).__name__)")
        text = "".join(o.get("text", "") for o in printed.outputs if o.get("output_type") == "stream")
        assert "hello from int" in text
        failing = box.run_cell("1 / 0")
        assert failing.status == "error" and failing.error_name == "ZeroDivisionError"
        assert box.execute(sum, [4, 5]) == 9  # an error in user code is a result, not a dead worker
        pids = box.worker_pids
    finally:
        box.close()
    assert wait_until_gone(pids) == []  # close leaves no process
    assert box.worker_pids == []


def test_timeout_kills_the_tree_and_the_session_recovers(backend: type[SandboxBackend], rootfs: str) -> None:
    cfg = config_for(backend, rootfs, execution_timeout=2.0, sandbox_mode=SandboxMode.ENFORCING)
    with OSSandbox(cfg) as box:
        before = box.worker_pids
        assert before
        with pytest.raises(SandboxTimeoutError):  # stopped, not slept through (it would return "woke")
            box.execute(sleep_for, 60)
        assert wait_until_gone(before) == []  # the whole tree was killed
        assert box.execute(sum, [1, 1]) == 2  # a fresh worker serves the next call
        after = box.worker_pids
        assert after and not set(after) & set(before)
    assert wait_until_gone(after) == []


def test_fake_backend_is_not_registered_and_only_testing_selects_it() -> None:
    from importlib.metadata import entry_points

    assert "fake" not in {ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert FakeBackend not in registry.backends().values()
    with fake_backend(["basic"]):
        assert registry.get_backend("basic") is FakeBackend
        assert registry.get_backend("namespace") is not FakeBackend  # only the names asked for
    assert registry.get_backend("basic") is not FakeBackend  # restored
    with fake_backend(), OSSandbox() as box:  # the default backend too
        assert box.session.backend_cls is FakeBackend
        assert box.session.worker is not None
        assert "none" in box.session.worker.describe()["confinement"]
