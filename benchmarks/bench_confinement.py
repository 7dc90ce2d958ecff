"""Confinement benchmarks (issue 3), each side by side with its comparison, as ratios.

1. One-shot NAMESPACE ``execute(f)`` on a fresh sandbox (all steps: namespaces,
   tmpfs root, cgroup, Landlock, seccomp + supervisor; worker forked from the
   warm template), through ``OSSandbox`` exactly as users get it: the worker
   comes from the warm pool when one is ready (back to back the pool refills
   ahead, up to its burst; the row "pool off" forks each one), vs
   ``bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc --die-with-parent
   python -c pass`` and vs ``python -c pass``, the three interleaved round by
   round. Back to back (target <= 1.0 vs bwrap) and 0.1 s apart (<= 0.5).
   Per-step timings of one such start: ``bench_oneshot_steps.py``.
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


def bench_one_shot(n: int, rounds: int, *, pool: bool = True, gap: float = 0.0) -> dict[str, Any]:
    """One-shot NAMESPACE sandboxes vs bwrap and vs ``python -c pass``, interleaved round by round.

    ``gap``: an untimed pause before each call (0: back to back). The ratios
    are medians over rounds; ``spread`` is the min-max of the per-round ratios.
    """
    from glsandbox_kernel.backends.zygote_backend import POOLS, flush_cleanups

    how = ("" if pool else ", pool off") + (f", {gap:g} s apart" if gap else ", back to back")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return {
            "name": f"one-shot NAMESPACE execute(f){how} vs bwrap python -c pass",
            "skipped": "bwrap not installed (scripts/install-system-deps installs bubblewrap)",
        }
    cfg = _config(IsolationType.NAMESPACE)
    POOLS.set_size(None if pool else 0)

    def ours() -> None:
        with OSSandbox(cfg) as box:
            box.execute(f)

    cmd = [bwrap, "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--die-with-parent", sys.executable, "-c", "pass"]  # fmt: skip

    failed = 0

    def theirs() -> bool:
        # --ro-bind / / fails now and then here when a Docker overlay mount comes or goes
        # while bwrap remounts it; such a call is not timed, it is run again.
        nonlocal failed
        ok = subprocess.run(cmd, stderr=subprocess.DEVNULL).returncode == 0
        failed += not ok
        if failed > 20:
            raise RuntimeError("bwrap keeps failing: " + " ".join(cmd))
        return ok

    def python_c() -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def timed_gap(fn: Any) -> float:
        total, done = 0.0, 0
        while done < n:
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter()
            ok = fn() is not False
            took = time.perf_counter() - t0
            if ok:
                total, done = total + took, done + 1
        return total / n

    try:
        ours()  # start the template once, as any host process would
        theirs()
        a, b, c = [], [], []
        for _ in range(rounds):
            a.append(timed_gap(ours))
            b.append(timed_gap(theirs))
            c.append(timed_gap(python_c))
    finally:
        POOLS.set_size(None)
        POOLS.drain_all()
        flush_cleanups()
    ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
    vs_bwrap = [x / y for x, y in zip(a, b, strict=True)]
    vs_python = [x / y for x, y in zip(a, c, strict=True)]
    return {
        "name": f"one-shot NAMESPACE execute(f){how} vs bwrap ... python -c pass",
        "ours_ms": ma * 1e3,
        "theirs_ms": mb * 1e3,
        "ratio": ma / mb,
        "spread": [min(vs_bwrap), max(vs_bwrap)],
        "target": 0.5 if gap else 1.0,
        "python_c_ms": mc * 1e3,
        "ratio_vs_python_c": ma / mc,
        "spread_vs_python_c": [min(vs_python), max(vs_python)],
        "bwrap_failed_calls": failed,
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
        bench_one_shot(max(5, n // 5), rounds, gap=0.1),
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
        spread = f" ({r['spread'][0]:.2f}-{r['spread'][1]:.2f})" if "spread" in r else ""
        print(
            f"{r['name']:<62} {r['ours_ms']:>7.3f} ms {r['theirs_ms']:>7.3f} ms "
            f"{r['ratio']:>7.2f} {'<=' + str(r['target']):>7} {ok}{spread}"
        )
        if "python_c_ms" in r:
            lo, hi = r["spread_vs_python_c"]
            print(f"{'  same, vs python -c pass':<62} {r['ours_ms']:>7.3f} ms {r['python_c_ms']:>7.3f} ms "
                  f"{r['ratio_vs_python_c']:>7.2f} {'<=0.5':>7} "
                  f"{'ok' if r['ratio_vs_python_c'] <= 0.5 else 'MISS'} ({lo:.2f}-{hi:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
