"""Confinement benchmarks (issue 3), each side by side with its comparison, as ratios.

1. One-shot NAMESPACE ``execute(f)`` on a fresh sandbox (all steps: namespaces,
   tmpfs root, cgroup, Landlock, seccomp + supervisor; worker forked from the
   warm template), through ``OSSandbox`` exactly as users get it: the worker
   comes from the warm pool when one is ready (back to back, the pool is
   still refilling for most calls; the row "pool off" forks each one), vs ``bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc
   --die-with-parent python -c pass``. Target ratio <= 1.0.
2. Warm-session ``execute(f, 1)`` round trip with the full confinement
   (NAMESPACE) vs the same on BASIC. Target <= 1.1: the supervisor is not on
   the hot path.
3. A CPU-bound pure-Python loop of about 1 s inside NAMESPACE vs outside any
   sandbox (the same function in this process). Target <= 1.03. Also reports
   the ratio of the loop's own CPU time (``cpu_time_ratio``), which machine
   load does not skew.

Rounds alternate between the two sides so machine noise hits both alike; the
figure is the median over rounds. Prints a table and, with ``--json``, JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from _timing import side_by_side, timed

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level


def f(x: int = 1) -> int:
    return x


def spin(n: int) -> float:
    """The CPU-bound function: a pure Python loop; returns the CPU time it took."""
    t0 = time.thread_time()
    total = 0
    for i in range(n):
        total += i * i % 7
    del total
    return time.thread_time() - t0


def _config(isolation: IsolationType) -> Any:
    # Audit on (in memory), metrics on: what a user gets by default.
    return create_config_by_level("moderate", isolation_type=isolation)


def bench_one_shot(n: int, rounds: int, *, pool: bool = True) -> dict[str, Any]:
    from glsandbox_kernel.backends.zygote_backend import POOLS

    label = "" if pool else ", pool off"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return {
            "name": f"one-shot NAMESPACE execute(f){label} vs bwrap python -c pass",
            "skipped": "bwrap not installed",
        }
    cfg = _config(IsolationType.NAMESPACE)
    POOLS.set_size(None if pool else 0)

    def ours() -> None:
        with OSSandbox(cfg) as box:
            box.execute(f)

    cmd = [bwrap, "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--die-with-parent", sys.executable, "-c", "pass"]  # fmt: skip

    def theirs() -> None:
        subprocess.run(cmd, check=True)

    try:
        ours()  # start the template once, as any host process would
        theirs()
        a, b = side_by_side(ours, theirs, n, rounds)
    finally:
        POOLS.set_size(None)
        POOLS.drain_all()
    return {
        "name": f"one-shot NAMESPACE execute(f){label} vs bwrap ... python -c pass",
        "ours_ms": a * 1e3,
        "theirs_ms": b * 1e3,
        "ratio": a / b,
        "target": 1.0,
    }


def bench_round_trip(n: int, rounds: int) -> dict[str, Any]:
    with OSSandbox(_config(IsolationType.NAMESPACE)) as ns, OSSandbox(_config(IsolationType.BASIC)) as basic:
        ns.execute(f, 1)
        basic.execute(f, 1)
        a, b = side_by_side(lambda: ns.execute(f, 1), lambda: basic.execute(f, 1), n, rounds)
        sup = getattr(ns.session.worker, "supervisor", None)
        notified = sup.stats["notifications"] if sup is not None else None
    return {
        "name": "warm execute(f, 1): NAMESPACE (full) vs BASIC",
        "ours_ms": a * 1e3,
        "theirs_ms": b * 1e3,
        "ratio": a / b,
        "target": 1.1,
        "supervisor_notifications": notified,
    }


def bench_cpu(rounds: int, seconds: float) -> dict[str, Any]:
    n = 200_000
    while (took := timed(functools.partial(spin, n), 1)) < seconds / 4:  # calibrate to about ``seconds``
        n *= 2
    n = int(n * seconds / took)
    wall_a, wall_b, cpu_a, cpu_b = [], [], [], []
    with OSSandbox(_config(IsolationType.NAMESPACE).replace(execution_timeout=60.0 * seconds + 60)) as box:
        box.execute(spin, 1000)
        for _ in range(rounds):  # alternate call by call
            t0 = time.perf_counter()
            cpu_a.append(box.execute(spin, n))
            wall_a.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            cpu_b.append(spin(n))
            wall_b.append(time.perf_counter() - t0)
    a, b = statistics.median(wall_a), statistics.median(wall_b)
    return {
        "name": f"CPU-bound loop (~{seconds:g} s): NAMESPACE vs no sandbox",
        "ours_ms": a * 1e3,
        "theirs_ms": b * 1e3,
        "ratio": a / b,
        "target": 1.03,
        "cpu_time_ratio": statistics.median(cpu_a) / statistics.median(cpu_b),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    args = parser.parse_args()
    n, rounds = (20, 3) if args.quick else (50, 7)
    results = [
        bench_one_shot(n, rounds),
        bench_one_shot(n, rounds, pool=False),
        bench_round_trip(10 * n, rounds),
        bench_cpu(3 if args.quick else 9, 0.3 if args.quick else 1.0),
    ]
    print(f"euid {os.geteuid()}")
    print_table(results)
    if args.json:
        print(json.dumps(results, indent=2))


def print_table(results: list[dict[str, Any]]) -> None:
    """The README's table format: ours, theirs, ratio, target."""
    print(f"{'benchmark':<62} {'ours':>10} {'theirs':>10} {'ratio':>7} {'target':>7}")
    for r in results:
        if "skipped" in r:
            print(f"{r['name']:<62} skipped: {r['skipped']}")
            continue
        ok = "ok" if r["ratio"] <= r["target"] else "MISS"
        print(
            f"{r['name']:<62} {r['ours_ms']:>7.3f} ms {r['theirs_ms']:>7.3f} ms "
            f"{r['ratio']:>7.2f} {'<=' + str(r['target']):>7} {ok}"
        )


if __name__ == "__main__":
    main()
