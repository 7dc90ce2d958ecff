"""Dask distributed benchmarks (issue 16), each side by side with its comparison, as ratios.

1. 200 small sandboxed calls over a 2-worker LocalCluster (processes, 1 thread
   each) through ``SandboxedExecutor.map`` (persistent sessions kept by the
   worker plugin, run chain in memory; and with the run chain in a JSONL file,
   fsync'd per record) vs the same 200 calls as plain Dask tasks
   (``client.gather(client.map(f, ...))``); also ``map(chunksize=10)`` (10
   calls per Dask task). Rounds alternate; medians.
   Target: sandboxed throughput >= 0.8x plain.
2. N small notebooks (default 20) with ``glsandbox run --cluster local:2``
   (one command, cluster start included) vs ``glsandbox run`` on each one
   after the other (one command per notebook, as a user would). One round.
   Target: cluster time <= 0.6x sequential.

Prints a table and, with ``--json``, JSON. ``--quick``: fewer rounds, 6 notebooks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from glsandbox_kernel import create_config_by_level


def f(x: int) -> int:
    return x + 1


def bench_calls(n: int, rounds: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from glsandbox_kernel.distributed import SandboxedExecutor

    config = create_config_by_level("strict")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
        ) as cluster,
        Client(cluster) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mem = SandboxedExecutor(client, config)
        disk = SandboxedExecutor(client, config, audit_path=os.path.join(tmp, "run.jsonl"))
        list(mem.map(f, range(20)))  # sessions start once per worker: not part of the figure
        client.gather(client.map(f, range(20), pure=False))
        plain, sandboxed, sandboxed_disk, chunked = [], [], [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            assert client.gather(client.map(f, range(n), pure=False)) == [x + 1 for x in range(n)]
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert list(mem.map(f, range(n))) == [x + 1 for x in range(n)]
            sandboxed.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert list(disk.map(f, range(n))) == [x + 1 for x in range(n)]
            sandboxed_disk.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert list(mem.map(f, range(n), chunksize=10)) == [x + 1 for x in range(n)]
            chunked.append(time.perf_counter() - t0)
        mem.shutdown()
        disk.shutdown()
        sessions = sum(h["sessions_started"] for h in mem.health(doctor=False).values())
    tp, ts, td, tc = (statistics.median(x) for x in (plain, sandboxed, sandboxed_disk, chunked))
    return {
        "calls": n,
        "rounds": rounds,
        "plain_per_s": n / tp,
        "sandboxed_per_s": n / ts,
        "sandboxed_file_chain_per_s": n / td,
        "ratio": tp / ts,
        "ratio_file_chain": tp / td,
        "sandboxed_chunked_per_s": n / tc,
        "ratio_chunked": tp / tc,
        "sessions_started": sessions,
        "target": ">= 0.8x",
    }


def _notebooks(directory: str, count: int) -> list[str]:
    import nbformat

    paths = []
    for i in range(count):
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell(f"emissions = [{i} * k for k in range(100)]"),
            nbformat.v4.new_code_cell("total = sum(emissions)\nprint('total', total)"),
        ]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = os.path.join(directory, f"nb{i:02d}.ipynb")
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def bench_notebooks(count: int) -> dict[str, Any]:
    glsandbox = [sys.executable, "-m", "glsandbox_kernel.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        paths = _notebooks(tmp, count)
        t0 = time.perf_counter()
        for path in paths:
            subprocess.run([*glsandbox, "run", path, "--level", "strict"], check=True, capture_output=True)
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*glsandbox, "run", "--cluster", "local:2", "--level", "strict", *paths],
            capture_output=True,
            text=True,
            check=False,
        )
        cluster = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"glsandbox run --cluster exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return {
        "notebooks": count,
        "sequential_s": sequential,
        "cluster_s": cluster,
        "ratio": cluster / sequential,
        "target": "<= 0.6x",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--notebooks", type=int, default=None)
    args = parser.parse_args()
    calls = bench_calls(200, 3 if args.quick else 5)
    notebooks = bench_notebooks(args.notebooks or (6 if args.quick else 20))
    if args.json:
        print(json.dumps({"calls": calls, "notebooks": notebooks}, indent=2))
        return
    print(f"{'benchmark':<58} {'figure':>24} {'ratio':>8}  target")
    print(
        f"{'200 sandboxed calls, 2 workers, chain in memory':<58} "
        f"{calls['sandboxed_per_s']:>9.0f}/s vs {calls['plain_per_s']:>6.0f}/s {calls['ratio']:>7.2f}x  >= 0.8x"
    )
    print(
        f"{'200 sandboxed calls, 2 workers, chain in a JSONL file':<58} "
        f"{calls['sandboxed_file_chain_per_s']:>9.0f}/s vs {calls['plain_per_s']:>6.0f}/s "
        f"{calls['ratio_file_chain']:>7.2f}x  >= 0.8x"
    )
    print(
        f"{'200 sandboxed calls, map(chunksize=10): 20 Dask tasks':<58} "
        f"{calls['sandboxed_chunked_per_s']:>9.0f}/s vs {calls['plain_per_s']:>6.0f}/s "
        f"{calls['ratio_chunked']:>7.2f}x  (no target)"
    )
    label = f"{notebooks['notebooks']} notebooks, --cluster local:2 vs sequential"
    print(
        f"{label:<58} {notebooks['cluster_s']:>8.1f}s vs {notebooks['sequential_s']:>6.1f}s "
        f"{notebooks['ratio']:>7.2f}x  <= 0.6x"
    )
    print(f"(sessions started on the workers: {calls['sessions_started']}; rounds: {calls['rounds']})")


if __name__ == "__main__":
    main()
