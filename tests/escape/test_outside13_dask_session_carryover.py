"""Outside review (14th): a sandboxed Dask task poisons the next run's calls through the pooled session.

Severity: medium-high (integrity of audit evidence; across runs, i.e. across clients or users
of one cluster). The Dask plugin (``distributed/plugin.py``, ``SandboxPlugin.checkout``) keeps
idle sessions per worker keyed by their configuration only, and hands one to any later task
with the same configuration, also one of another ``SandboxedExecutor`` (another run, another
client, another audit chain). The session's worker interpreter lives on between the tasks, so
whatever one task leaves in it (patched builtins, modules in ``sys.modules``, files in its
``/tmp``, threads still running) acts inside the next run's calls.

Attack: run A's task (untrusted agent code) replaces ``builtins.sum`` in its sandbox's
interpreter and returns normally. Run B, a different executor with its own run chain, maps an
honest ``sum`` over its inputs on the same worker.

What the host saw: run B's result is ``-1`` (the planted answer) instead of ``6``: the
evidence of run B is decided by code that run B never submitted.

Expected: a task of one run never runs in a session another run's task has used (a fresh
sandbox per run, or the session's state reset: a zygote fork per checkout), or the reuse is
refused; run B computes ``6``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the 'distributed' extra is not installed")

from glsandbox_kernel import create_config_by_level  # noqa: E402
from glsandbox_kernel.distributed import SandboxedExecutor, SandboxPlugin  # noqa: E402
from glsandbox_kernel.distributed.client import local_cluster  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _plant() -> str:
    import builtins

    builtins.sum = lambda *args, **kwargs: -1  # type: ignore[assignment]
    return "planted"


def _honest_sum(values: list[int]) -> int:
    return sum(values)


@pytest.fixture
def client() -> Iterator[Any]:
    from distributed import Client

    cluster = local_cluster(1)
    c = Client(cluster)
    c.register_plugin(SandboxPlugin(max_sessions=2))
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def test_one_runs_task_does_not_decide_the_next_runs_result(client: Any) -> None:
    config = create_config_by_level("strict")
    with SandboxedExecutor(client, config, register_plugin=False, label="run-a") as run_a:
        assert run_a.submit(_plant).result(timeout=240) == "planted"
    with SandboxedExecutor(client, config, register_plugin=False, label="run-b") as run_b:
        got = run_b.submit(_honest_sum, [1, 2, 3]).result(timeout=240)
    assert got == 6, f"run B's honest sum([1, 2, 3]) returned {got!r}: run A's task planted it in the pooled session"
