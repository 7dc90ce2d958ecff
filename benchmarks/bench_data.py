"""Data through the boundary (issue 14): glsandbox ``execute`` vs ``multiprocessing.Pool(1).apply`` (pickle).

Cases, each built in the worker and returned to the host (and the array
also passed as an argument): a 1M-row DataFrame with a string column, a dict
of 1M small items (str keys, int values), a 100 MB numpy array. Each
measurement runs in a fresh process (``--one``) so peak memory is its own:
seconds of the call, the host's peak RSS above its level before the call,
and the worker's peak RSS above its level before the call, both as a ratio
to the size of the data. Both processes have imported what the case needs
(numpy, pandas) before the call, so the peaks are the data's, not an import's
(pandas's import alone is some 35 MB, 0.4x the DataFrame). Sides alternate round by round; medians are
reported with the spread of the per-round ratios. ``--json`` for report.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

CASES = {
    "dataframe": ("return a 1M-row DataFrame with a string column", 1.5),
    "dict": ("return a dict of 1M small items", 1.5),
    "array": ("return a 100 MB numpy array", 1.0),
    "array_arg": ("pass a 100 MB numpy array", 1.0),
}


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make(case: str) -> Any:
    """Worker side: build the case's value."""
    import numpy as np

    if case == "dataframe":
        import pandas as pd

        n = 1_000_000
        return pd.DataFrame({"id": np.arange(n), "x": np.arange(n) / 3, "name": [f"row-{i}" for i in range(n)]})
    if case == "dict":
        return {f"k{i}": i for i in range(1_000_000)}
    return np.ones(100 * 2**20 // 8)


def size_of(value: Any) -> int:
    if hasattr(value, "memory_usage"):
        return int(value.memory_usage(deep=True).sum())
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    return sys.getsizeof(value) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in value.items())


def worker_probe(case: str) -> tuple[int, int]:
    """Worker side: (current RSS, peak RSS) of this process."""
    return _rss(), _maxrss()


def warm() -> None:
    """Worker side: import what the cases use, so the timed call does not."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401


def take(value: Any) -> int:
    return int(value.nbytes)


def one(case: str, side: str) -> dict[str, Any]:
    """Run one measurement in this (fresh) process."""
    import numpy as np

    arg = np.ones(100 * 2**20 // 8) if case == "array_arg" else None
    if case == "dataframe":
        import pandas  # noqa: F401  # both sides' hosts, as both workers (warm): the data's cost, not an import's
    if side == "ours":
        from glsandbox_kernel import OSSandbox, create_config_by_level

        box = OSSandbox(create_config_by_level("moderate"))
        box.__enter__()
        call = box.execute
        close = box.__exit__
    else:
        pool = multiprocessing.get_context("fork").Pool(1)
        call = lambda fn, *a: pool.apply(fn, a)  # noqa: E731
        close = lambda *a: pool.terminate()  # noqa: E731
    try:
        call(warm)  # the worker runs and has imported what the case needs
        w_before, _ = call(worker_probe, case)
        host_before = _rss()
        t0 = time.perf_counter()
        value = call(take, arg) if case == "array_arg" else call(make, case)
        took = time.perf_counter() - t0
        host_peak = max(0, _maxrss() - host_before)
        _, w_peak = call(worker_probe, case)
        data = size_of(arg if case == "array_arg" else value)
    finally:
        close(None, None, None)
    return {
        "seconds": took,
        "host_peak_ratio": host_peak / data,
        "worker_peak_ratio": max(0, w_peak - w_before) / data,
    }


def run_one(case: str, side: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", case, side], capture_output=True, text=True, check=False, timeout=600
    )
    if proc.returncode != 0:
        raise SystemExit(f"{case}/{side} failed: {proc.stderr.strip().splitlines()[-3:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def bench(case: str, rounds: int) -> dict[str, Any]:
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for _ in range(rounds):
        ours.append(run_one(case, "ours"))
        theirs.append(run_one(case, "pool"))
    a = statistics.median(r["seconds"] for r in ours)
    b = statistics.median(r["seconds"] for r in theirs)
    ratios = [x["seconds"] / y["seconds"] for x, y in zip(ours, theirs, strict=True)]
    name, target = CASES[case]
    return {
        "name": f"{name}, glsandbox vs Pool(1) (pickle)",
        "unit": "s",
        "ours_ms": a,
        "theirs_ms": b,
        "ratio": a / b,
        "spread": [min(ratios), max(ratios)],
        "target": target,
        "ours_host_peak": statistics.median(r["host_peak_ratio"] for r in ours),
        "ours_worker_peak": statistics.median(r["worker_peak_ratio"] for r in ours),
        "pool_host_peak": statistics.median(r["host_peak_ratio"] for r in theirs),
        "pool_worker_peak": statistics.median(r["worker_peak_ratio"] for r in theirs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke run)")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "SIDE"), help=argparse.SUPPRESS)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    rounds = 2 if args.quick else 3
    results = [bench(case, rounds) for case in args.cases.split(",")]
    for r in results:
        print(
            f"{r['name']:<70} {r['ours_ms']:6.3f} s {r['theirs_ms']:6.3f} s ratio {r['ratio']:.2f} "
            f"[{r['spread'][0]:.2f}-{r['spread'][1]:.2f}] target <= {r['target']:g}; peak/data host "
            f"{r['ours_host_peak']:.2f} (pool {r['pool_host_peak']:.2f}) worker {r['ours_worker_peak']:.2f} "
            f"(pool {r['pool_worker_peak']:.2f})"
        )
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2))


if __name__ == "__main__":
    main()
