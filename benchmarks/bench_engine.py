"""Engine benchmarks (issue 2), each side by side with its comparison, as ratios.

1. Warm-session round trip of ``execute(f, 1)`` vs ``multiprocessing.Pool(1).apply(f, (1,))``.
2. One-shot ``execute_lenient(f, 1)`` on a fresh sandbox vs ``subprocess.run([python, "-c", "pass"])``:
   on the default backend (NAMESPACE where available) as users get it (warm
   pool on), the same with the warm pool off, and on BASIC. Back to back
   (the pool refills while the next call already waits), and with a 0.1 s
   pause between calls (not timed: the pool has refilled, the usual case).
3. Idle session memory (RSS of the worker tree, from /proc) vs a bare ``python -c`` process.

Rounds alternate between the two sides so machine noise hits both alike; the
figure is the median over rounds. Prints a table and, with ``--json``, JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from _timing import side_by_side

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig, create_config_by_level, execute_lenient
from glsandbox_kernel.config import NetworkConfig
from glsandbox_kernel.procfs import cpu_rss as read_proc_stat
from glsandbox_kernel.session import Session


def f(x: int) -> int:
    return x


def _tree_cpu(pids: list[int]) -> float:
    """CPU seconds of this process (all threads) and of ``pids``, from /proc (the same clock for both)."""
    return sum((read_proc_stat(pid) or (0.0, 0))[0] for pid in [os.getpid(), *pids])


def _seal_all(box: OSSandbox) -> Callable[[], None]:
    """Seal every record ``box`` queued so far (the host loop's group commit, done now)."""
    audit = box.audit_log
    return audit.commit if audit is not None else lambda: None


def bench_round_trip(n: int, rounds: int, isolation: IsolationType | None) -> list[dict[str, Any]]:
    """Warm calls side by side (audit and metrics on, the defaults), and the CPU both sides spend per call."""
    cfg = OSSandboxConfig(isolation_type=isolation)
    with OSSandbox(cfg) as box, multiprocessing.get_context("fork").Pool(1) as pool:
        box.execute(f, 1)
        pool.apply(f, (1,))
        ours_pids = box.worker_pids
        pool_pids = [p.pid for p in multiprocessing.active_children() if p.pid not in ours_pids]
        cpu = {"ours": 0.0, "theirs": 0.0}

        def counted(
            key: str, pids: list[int], call: Callable[[], Any], finish: Callable[[], Any] = lambda: None
        ) -> Callable[[], Any]:
            state = {"left": 0, "t0": 0.0}

            def run() -> Any:  # CPU read at the first and last call of each round: not per call
                if state["left"] == 0:
                    state["left"], state["t0"] = n, _tree_cpu(pids)
                result = call()
                state["left"] -= 1
                if state["left"] == 0:
                    finish()
                    cpu[key] += _tree_cpu(pids) - state["t0"]
                return result

            return run

        ours, theirs = side_by_side(
            # The round's audit records are sealed in it, timed: left to the host loop, they would be
            # sealed during Pool's round, on its clock and its CPU (the loop waits 50 ms before it seals).
            counted("ours", ours_pids, lambda: box.execute(f, 1), finish=_seal_all(box)),
            counted("theirs", pool_pids, lambda: pool.apply(f, (1,))),
            n,
            rounds,
        )
        backend = box.isolation_type
    calls = n * rounds
    return [
        {
            "name": f"warm execute(f, 1) [{backend}] vs Pool(1).apply",
            "ours_ms": ours * 1e3,
            "theirs_ms": theirs * 1e3,
            "ratio": ours / theirs,
            "target": 1.0,
        },
        {
            "name": "CPU per warm call, host + worker, vs Pool(1).apply",
            "ours_ms": cpu["ours"] / calls * 1e3,
            "theirs_ms": cpu["theirs"] / calls * 1e3,
            "ratio": cpu["ours"] / cpu["theirs"] if cpu["theirs"] else float("nan"),
            "target": None,
        },
    ]


def timed_spaced(fn: Callable[[], Any], n: int, gap: float) -> float:
    """Mean time of ``fn`` over ``n`` calls with an untimed ``gap`` seconds before each."""
    total = 0.0
    for _ in range(n):
        time.sleep(gap)
        t0 = time.perf_counter()
        fn()
        total += time.perf_counter() - t0
    return total / n


def bench_one_shot(
    n: int, rounds: int, isolation: IsolationType | None, *, pool: bool = True, gap: float = 0.0
) -> dict[str, Any]:
    """One-shot LENIENT sandbox per call (``execute_lenient`` for the default backend).

    A named backend runs LENIENT without network: BASIC refuses a network it cannot enforce.
    """
    from glsandbox_kernel.backends.zygote_backend import POOLS

    POOLS.set_size(None if pool else 0)
    if isolation is None:

        def ours_fn() -> Any:
            return execute_lenient(f, 1)
    else:
        cfg = create_config_by_level("lenient", isolation_type=isolation, network=NetworkConfig(allow_network=False))

        def ours_fn() -> Any:
            with OSSandbox(cfg) as box:
                return box.execute(f, 1)

    def theirs_fn() -> Any:
        return subprocess.run([sys.executable, "-c", "pass"], check=True)

    try:
        ours_fn()  # start the template once, as any host process would
        ta, tb = [], []
        for _ in range(rounds):
            ta.append(timed_spaced(ours_fn, n, gap))
            tb.append(timed_spaced(theirs_fn, n, gap))
        ours, theirs = statistics.median(ta), statistics.median(tb)
        cls, _ = Session._choose_backend(create_config_by_level("lenient", isolation_type=isolation))
        backend = cls.isolation_type.value
    finally:
        POOLS.set_size(None)
        POOLS.drain_all()
    how = ("pool" if pool else "no pool") + (f", {gap:g} s apart" if gap else ", back to back")
    return {
        "name": f"one-shot [{backend}, {how}] vs python -c pass",
        "ours_ms": ours * 1e3,
        "theirs_ms": theirs * 1e3,
        "ratio": ours / theirs,
        "target": 0.5,
    }


def _pss(pid: int) -> int:
    """Proportional set size of ``pid`` (shared pages split among their users), from /proc."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def bench_idle_memory(isolation: IsolationType | None) -> list[dict[str, Any]]:
    """Idle worker tree vs a bare interpreter: RSS (target row) and PSS (forked trees share pages)."""
    with OSSandbox(OSSandboxConfig(isolation_type=isolation)) as box:
        box.execute(f, 1)
        time.sleep(0.2)
        pids = box.worker_pids
        ours = sum((read_proc_stat(p) or (0, 0))[1] for p in pids)
        ours_pss = sum(_pss(p) for p in pids)
        backend = box.isolation_type
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    time.sleep(1.0)
    theirs = (read_proc_stat(proc.pid) or (0, 0))[1]
    theirs_pss = _pss(proc.pid)
    proc.kill()
    proc.wait()
    return [
        {
            "name": f"idle session RSS (worker tree, {len(pids)} processes) [{backend}] vs bare python",
            "ours_ms": ours / 2**20,
            "theirs_ms": theirs / 2**20,
            "ratio": ours / theirs,
            "target": 2.0,
            "unit": "MiB",
        },
        {
            "name": f"idle session PSS (worker tree) [{backend}] vs bare python",
            "ours_ms": ours_pss / 2**20,
            "theirs_ms": theirs_pss / 2**20,
            "ratio": ours_pss / theirs_pss,
            "target": None,
            "unit": "MiB",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    parser.add_argument("--isolation", default="basic", help="backend for the warm-session figures")
    parser.add_argument("--warm", action="store_true", help="only the warm-session rows")
    args = parser.parse_args()
    iso = None if args.isolation == "default" else IsolationType(args.isolation)
    n, rounds = (100, 3) if args.quick else (500, 7)
    if args.warm:
        print_table(bench_round_trip(n, rounds, iso))
        return
    results = [
        *bench_round_trip(n, rounds, iso),
        bench_one_shot(max(5, n // 20), rounds, None),
        bench_one_shot(max(5, n // 20), rounds, None, gap=0.1),
        bench_one_shot(max(5, n // 20), rounds, None, pool=False),
        bench_one_shot(max(5, n // 20), rounds, IsolationType.BASIC),
        bench_one_shot(max(5, n // 20), rounds, IsolationType.BASIC, gap=0.1),
        *bench_idle_memory(iso),
        *bench_idle_memory(None),
    ]
    print_table(results)
    if args.json:
        print(json.dumps(results, indent=2))


def print_table(results: list[dict[str, Any]]) -> None:
    """The README's table format: ours, theirs, ratio, target."""
    print(f"{'benchmark':<66} {'ours':>10} {'theirs':>10} {'ratio':>7} {'target':>7}")
    for r in results:
        unit = r.get("unit", "ms")
        ok = "" if r["target"] is None else ("ok" if r["ratio"] <= r["target"] else "MISS")
        print(
            f"{r['name']:<66} {r['ours_ms']:>7.3f} {unit:<2} {r['theirs_ms']:>7.3f} {unit:<2} "
            f"{r['ratio']:>7.2f} {'<=' + str(r['target']):>7} {ok}"
        )


if __name__ == "__main__":
    main()
