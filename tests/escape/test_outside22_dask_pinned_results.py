"""Outside review (22nd): a ``map``'s results stay on the Dask workers until its whole batch is done,
although the executor resolved (and the caller consumed) them long before; Dask counts each as 56 bytes.

``SandboxedExecutor._gather_in_order`` keeps the batch's list of Dask futures (``dask_futures``) for
the life of its thread and slices windows out of it, so every Dask future of the batch stays referenced
until the last window resolved: the scheduler keeps every result in some worker's memory. A
``TaskOutcome``'s ``value`` is not seen by Dask's ``sizeof`` (the object reports 56 bytes), so the
workers' memory manager neither spills nor pauses for them.

Measured (2-worker LocalCluster, processes): ``map`` of 200 calls returning 200 kB each, the last one
sleeping 6 s; after the caller consumed 199 results the scheduler still holds all 200 keys in memory,
their ``nbytes`` summing to 11200 (56 each) for ~40 MB held. With 10k calls of 1 MB a batch holds
10 GB on the workers while the caller holds one result at a time.

Severity: low (resource use on the trusted workers, no escape; the sandbox's own memory limit is not
involved). Fix: drop each window's futures once resolved (pop them off the list, e.g. keep a deque,
or ``del dask_futures[:size]``), and give ``TaskOutcome`` a ``__sizeof__`` (or register a
``dask.sizeof``) that counts its value and lines.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the 'distributed' extra (dask[distributed]) is not installed")

from glsandbox_kernel import create_config_by_level  # noqa: E402
from glsandbox_kernel.distributed import SandboxedExecutor  # noqa: E402

from ..backends.test_distributed import client as client  # noqa: E402 - its 2-worker cluster (processes)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

N = 200


def blob(i: int) -> bytes:
    if i == N - 1:
        time.sleep(6.0)  # holds the last window open
    return b"x" * 200_000


def _held(dask_scheduler: Any) -> tuple[int, int]:
    """Keys of this test's map in memory on the workers, and the bytes Dask counts for them."""
    mem = [ts for ts in dask_scheduler.tasks.values() if ts.state == "memory" and "glsandbox-blob" in str(ts.key)]
    return len(mem), sum(ts.nbytes for ts in mem)


def test_consumed_results_are_released_on_the_workers(client: Any) -> None:
    with SandboxedExecutor(client, create_config_by_level("strict")) as ex:
        results = ex.map(blob, range(N))
        for _ in range(N - 1):
            assert len(next(results)) == 200_000
        keys, counted = client.run_on_scheduler(_held)
        assert len(next(results)) == 200_000
    # Windows 64 + 128 resolved long ago; only the last window (8 calls) may still be held.
    assert keys <= 8, (
        f"{N - 1} results consumed, the workers still hold {keys} of the map's results "
        f"(~{keys * 200_000 // 1_000_000} MB; Dask counts {counted} bytes)"
    )
