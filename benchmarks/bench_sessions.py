"""Many sessions (issue 14): 20 sandbox sessions driven by 20 threads vs 20 x ``multiprocessing.Pool(1)``.

Each thread owns one warm session (or one Pool(1)) and makes ``n`` calls of
``f(1)`` back to back; all threads start together. Reported: throughput of
the whole (calls/s; the ratio is ours' time per call over the pools', so
lower is better, as everywhere) and the p99 latency of one call, with the
spread of the per-round ratios. ``--json`` for report.py.

Also measured: CPU per call (the host process plus the worker processes,
from /proc), and from it the floor of the mean latency on this machine's
cores. The callers form a closed loop (each waits for its reply before the
next call), so by Little's law the mean latency is ``sessions / throughput``,
and throughput is at most ``cores / CPU per call``: with 20 sessions on 2
cores the mean cannot drop below ``10 x CPU per call``, and the p99 not
below the mean.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig

SESSIONS = 20


def f(x: int) -> int:
    return x


def drive(calls: list[Callable[[], Any]], n: int) -> tuple[float, list[float], float]:
    """Run ``n`` calls on every callable, one thread each.

    Returns (wall seconds, every latency, fairness): fairness is the slowest
    thread's time for its ``n`` calls over the fastest's (1.0: all alike).
    """
    latencies: list[list[float]] = [[] for _ in calls]
    start = threading.Barrier(len(calls) + 1)

    def run(i: int) -> None:
        call, out = calls[i], latencies[i]
        start.wait()
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    totals = [sum(lat) for lat in latencies]
    return wall, [x for lat in latencies for x in lat], max(totals) / min(totals)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (/proc/PID/stat; a gone pid counts 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def measured(calls: list[Callable[[], Any]], n: int, pids: list[int]) -> tuple[float, list[float], float, float, float]:
    """:func:`drive` plus the CPU seconds per call of this process and of ``pids``, and the host
    process's voluntary context switches per call (its threads' hand-offs: waits for a reply, for
    the GIL, for a lock; a figure the machine's load changes less than the times)."""
    host0, kids0 = time.process_time(), cpu_seconds(pids)
    switches0 = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    wall, lat, fair = drive(calls, n)
    cpu = time.process_time() - host0 + cpu_seconds(pids) - kids0
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switches0
    total = len(calls) * n
    return wall, lat, fair, cpu / total, switches / total


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke run)")
    parser.add_argument("--isolation", default="basic")
    args = parser.parse_args()
    n, rounds = (50, 3) if args.quick else (200, 5)
    iso = None if args.isolation == "default" else IsolationType(args.isolation)
    boxes = [OSSandbox(OSSandboxConfig(isolation_type=iso)) for _ in range(SESSIONS)]
    pools = [multiprocessing.get_context("fork").Pool(1) for _ in range(SESSIONS)]
    try:
        ours_calls = [lambda b=b: b.execute(f, 1) for b in boxes]
        pool_calls = [lambda p=p: p.apply(f, (1,)) for p in pools]
        drive(ours_calls, 5)
        drive(pool_calls, 5)
        ours_pids = [pid for box in boxes for pid in box.worker_pids]
        pool_pids = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
        a: list[tuple[float, list[float], float, float, float]] = []
        b: list[tuple[float, list[float], float, float, float]] = []
        for _ in range(rounds):
            a.append(measured(ours_calls, n, ours_pids))
            b.append(measured(pool_calls, n, pool_pids))
    finally:
        for box in boxes:
            box.close()
        for pool in pools:
            pool.terminate()
    total = SESSIONS * n
    ratios = [x[0] / y[0] for x, y in zip(a, b, strict=True)]
    wa, wb = statistics.median(x[0] for x in a), statistics.median(y[0] for y in b)
    pa, pb = statistics.median(p99(x[1]) for x in a), statistics.median(p99(y[1]) for y in b)
    results = [
        {
            "name": f"{SESSIONS} sessions on {SESSIONS} threads vs {SESSIONS} x Pool(1): time per call "
            f"({total / wa:.0f} vs {total / wb:.0f} calls/s)",
            "ours_ms": wa / total * 1e3,
            "theirs_ms": wb / total * 1e3,
            "ratio": wa / wb,
            "spread": [min(ratios), max(ratios)],
            "target": 1.0,
        },
        {
            "name": f"  p99 latency of one call, {SESSIONS} sessions vs {SESSIONS} x Pool(1)",
            "ours_ms": pa * 1e3,
            "theirs_ms": pb * 1e3,
            "ratio": pa / pb,
            "spread_ms": [min(p99(x[1]) for x in a) * 1e3, max(p99(x[1]) for x in a) * 1e3],
            "target": None,
        },
        {
            "name": "  fairness: slowest session's time for its calls over the fastest's (1.0 = fair)",
            "ours_ms": statistics.median(x[2] for x in a),
            "theirs_ms": statistics.median(y[2] for y in b),
            "ratio": statistics.median(x[2] for x in a) / statistics.median(y[2] for y in b),
            "target": None,
            "unit": "x",
        },
    ]
    cores = len(os.sched_getaffinity(0))
    ca, cb = statistics.median(x[3] for x in a), statistics.median(y[3] for y in b)
    results.append(
        {
            "name": f"  CPU per call, host + workers (floor of the mean latency on {cores} cores: "
            f"{SESSIONS * ca / cores * 1e3:.1f} vs {SESSIONS * cb / cores * 1e3:.1f} ms)",
            "ours_ms": ca * 1e3,
            "theirs_ms": cb * 1e3,
            "ratio": ca / cb,
            "mean_latency_ms": [
                statistics.median(statistics.mean(x[1]) for x in a) * 1e3,
                statistics.median(statistics.mean(y[1]) for y in b) * 1e3,
            ],
            "target": None,
        }
    )
    sa, sb = statistics.median(x[4] for x in a), statistics.median(y[4] for y in b)
    results.append(
        {
            "name": "  host process's voluntary context switches per call (hand-offs between its threads)",
            "ours_ms": sa,
            "theirs_ms": sb,
            "ratio": sa / sb,
            "target": None,
            "unit": "/call",
        }
    )
    for r in results:
        unit = r.get("unit", "ms")
        print(f"{r['name']:<90} {r['ours_ms']:8.3f} {unit} {r['theirs_ms']:8.3f} {unit} ratio {r['ratio']:.2f}")
    mean_a, mean_b = results[3]["mean_latency_ms"]  # the CPU row
    print(f"mean latency {mean_a:.1f} ms vs {mean_b:.1f} ms (closed loop: sessions / throughput)")
    print(f"time-per-call ratio over the rounds: {min(ratios):.2f}-{max(ratios):.2f}")
    print("target for the p99: <= 5 ms (ours)")
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2))


if __name__ == "__main__":
    main()
