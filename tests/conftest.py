"""Shared fixtures: leak checks against the real process table."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def live_pids(pids: list[int]) -> list[int]:
    """The pids in ``pids`` that are still running (zombies count as gone)."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            out.append(pid)
    return out


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running at the deadline."""
    deadline = time.monotonic() + timeout
    alive = live_pids(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = live_pids(alive)
    return alive


def wait_removed(paths: list[str], timeout: float = 5.0) -> list[str]:
    """Wait until none of ``paths`` exists (directories and cgroups are removed in the
    background after close); return those still there at the deadline."""
    deadline = time.monotonic() + timeout
    left = [p for p in paths if os.path.exists(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.01)
        left = [p for p in left if os.path.exists(p)]
    return left


def zygote_children() -> list[int]:
    """Processes below this test process's zygote (should be none between tests,
    except idle warm-pool workers, which the pool itself names)."""
    from glsandbox_kernel import zygote

    z = zygote._ZYGOTES.get(sys.executable)
    if z is None or z.proc.poll() is not None:
        return []
    from glsandbox_kernel.backends.zygote_backend import POOLS
    from glsandbox_kernel.procfs import descendants

    POOLS.settle()  # a worker still being made is not pooled yet: wait until it is
    pooled = POOLS.pooled_pids()
    return [p for p in live_pids(descendants(z.proc.pid)) if p not in pooled]


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test must leave no sandbox process behind (checked in /proc).

    Idle warm-pool workers are skipped only by asking the pool for their pids.
    """
    yield
    left = wait_gone(zygote_children(), timeout=5.0)
    assert not left, f"sandbox processes left behind: {left}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last: they are the slowest, and the JupyterLab and
    Chromium processes they start should not overlap the timing-sensitive
    confinement tests that fork straight from the pytest process."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
