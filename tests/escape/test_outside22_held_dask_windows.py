"""Outside review (22nd), what held: the doubling gather windows (64, 128, then the rest) lose, duplicate
and reorder nothing, keep every error's type, and the run chain of a batch with failures verifies.

Judged from the host on a real 2-worker ``LocalCluster(processes=True)``: 200 calls (three windows) where
calls raise a builtin (``ZeroDivisionError``), the sandbox's own error (``SandboxRemoteError`` for a class
defined inside), or return an object that may not cross (``SandboxSecurityError``), in the first and later
windows. Measured: ``map`` yields the 200 results in order up to the first error; every future of
``submit_many`` has its own value or its own error type; each call is sealed into the run chain exactly
once; ``glsandbox audit verify`` of the JSONL run file: chain intact, anchored in its manifest, the
manifest's ok/error counts those of the calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the 'distributed' extra (dask[distributed]) is not installed")

from glsandbox_kernel import SandboxRemoteError, SandboxSecurityError, create_config_by_level  # noqa: E402
from glsandbox_kernel.distributed import SandboxedExecutor, carried_tasks  # noqa: E402

from ..backends.test_distributed import client as client  # noqa: E402 - its 2-worker cluster (processes)
from ..conftest import glsandbox_cli  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

N = 200
ERRORS: dict[int, type[BaseException]] = {
    5: ZeroDivisionError,
    63: SandboxRemoteError,
    64: SandboxSecurityError,
    130: ZeroDivisionError,
    199: SandboxRemoteError,
}


def mixed(i: int) -> Any:
    if ERRORS.get(i) is ZeroDivisionError:
        return i / 0
    if ERRORS.get(i) is SandboxRemoteError:

        class ToolError(Exception):
            pass

        raise ToolError(f"call {i}")
    if ERRORS.get(i) is SandboxSecurityError:

        class Opaque:
            pass

        return Opaque()
    return i * 3


def test_windows_keep_order_types_and_a_verified_chain(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with SandboxedExecutor(client, create_config_by_level("strict"), audit_path=str(path)) as ex:
        futures = ex.submit_many(mixed, [((i,), {}) for i in range(N)])
        for i, future in enumerate(futures):
            error = future.exception(timeout=240)
            if i in ERRORS:
                assert type(error) is ERRORS[i], (i, error)
            else:
                assert error is None and future.result() == i * 3, (i, error)
        ok_part = [i * 3 for i in range(5)]
        results = ex.map(mixed, range(N))
        assert [next(results) for _ in range(5)] == ok_part
        with pytest.raises(ZeroDivisionError):
            next(results)
        results.close()
    result = glsandbox_cli("audit", "verify", str(path), timeout=120)
    assert result.returncode == 0 and "chain intact" in result.stdout, result.stdout + result.stderr
    assert "anchored in its manifest" in result.stdout
    records = [json.loads(line) for line in path.read_bytes().split(b"\n") if line]
    tasks = [t for t in carried_tasks(records) if t["kind"] == "call"]
    keys = [t["task"] for t in tasks]
    assert len(keys) == len(set(keys)), "a call was sealed twice"
    by_batch: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        by_batch.setdefault(task["task"].rsplit("-", 1)[0], []).append(task)
    submitted = next(batch for batch in by_batch.values() if len(batch) == N)
    assert sorted(int(t["task"].rsplit("-", 1)[1]) for t in submitted) == list(range(N))
    errors = {int(t["task"].rsplit("-", 1)[1]) for t in submitted if t["status"] == "error"}
    assert errors == set(ERRORS)
    manifest = records[-1]["extra"]["cluster_manifest"]
    assert manifest["tasks"]["lost"] == 0
    assert manifest["tasks"]["ok"] + manifest["tasks"]["error"] == len(tasks)
