"""Dask distributed benchmarks (issue 16), each side by side with its comparison, as ratios.

1. 200 small sandboxed calls over a 2-worker LocalCluster (processes, 1 thread
   each) through ``SandboxedExecutor.map`` (persistent sessions kept by the
   worker plugin; run chain in memory, and in a JSONL file fsync'd per
   record) vs the same 200 calls as plain Dask tasks
   (``client.gather(client.map(f, ...))``); also ``map(chunksize=10)`` (10
   calls per Dask task). Rounds alternate; the figure is the median per-call
   time, the spread that of the per-round ratios. Every side is one
   ``client.map`` of the 200 calls on the same cluster (same workers, one
   thread each), warmed up once, waited for in full; each round starts one
   side later, so no side always follows the same one.
   Target: sandboxed throughput >= 0.8x plain, i.e. time per call <= 1.25x.
   Also CPU per call, all processes, and where the added CPU goes (client
   and scheduler, the executor's threads, the Dask workers' task threads,
   their host loop and other threads, the sandboxed processes; per thread
   from ``/proc/PID/task/TID/schedstat`` in ns), beside plain tasks that
   sleep 1 ms (what Dask alone charges for a task that lasts as long).
2. N small notebooks (default 20) with ``glsandbox run --cluster local:2``
   (one command, cluster start included) vs ``glsandbox run`` on each one
   after the other (one command per notebook, as a user would), alternating
   rounds. Target: cluster time <= 0.6x sequential.

Prints a table and, with ``--json``, the rows ``benchmarks/report.py`` reads
(``name, ours_ms, theirs_ms, ratio, spread, target``; ratio = ours / theirs).
``--quick``: fewer rounds, 6 notebooks.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from glsandbox_kernel import create_config_by_level

CALLS_TARGET = 1 / 0.8  # time-per-call ratio for throughput >= 0.8x
NOTEBOOKS_TARGET = 0.6


# x + 1, pickled by reference: a function defined in __main__ would be cloudpickled by value into every
# plain Dask task (Dask 2026 pickles each task's function per message), while SandboxedExecutor.map ships
# its function once per map. The same by-reference callable on both sides keeps the comparison fair.
f = functools.partial(operator.add, 1)


def row(
    name: str, ours: list[float], theirs: list[float], target: float | None, *, unit: str = "ms", **more: Any
) -> dict[str, Any]:
    """One report row from per-round seconds (per call or per run): medians and the spread of round ratios.

    ``ours_ms``/``theirs_ms`` are in ``unit`` (report.py prints them with it): ms, or s for whole runs.
    """
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    a, b = statistics.median(ours), statistics.median(theirs)
    scale = 1e3 if unit == "ms" else 1.0
    return {
        "name": name,
        "unit": unit,
        "ours_ms": a * scale,
        "theirs_ms": b * scale,
        "ratio": a / b,
        "spread": [min(ratios), max(ratios)],
        "rounds": len(ratios),
        "target": target,
        **more,
    }


def _thread_cpu(pid: int | str = "self") -> dict[str, float]:
    """CPU seconds so far of each thread of process ``pid``, by thread id (``/proc/PID/task/TID/schedstat``, ns).

    Nanoseconds on CPU, user and kernel time together: ``stat``'s clock ticks
    (10 ms) are too coarse for figures of a fraction of a millisecond per call.
    """
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:  # the process ended
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                out[tid] = int(fh.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):  # the thread ended
            continue
    return out


def _by_place(names: dict[int, str], rules: list[tuple[str, str]], default: str) -> dict[str, float]:
    """This process's thread CPU summed by place: the first rule whose text is in the thread's name, else ``default``."""
    out = {place: 0.0 for _, place in rules}
    out[default] = 0.0
    for tid, seconds in _thread_cpu().items():
        name = names.get(int(tid), "")
        place = next((p for text, p in rules if text in name), default)
        out[place] += seconds
    return out


def _worker_cpu(dask_worker: Any) -> dict[str, float]:
    """``client.run`` callback: CPU seconds so far of this Dask worker, by place, and of its sessions' sandboxes.

    ``tasks``: the threads Dask runs tasks on (for a sandboxed call: the
    plugin and ``OSSandbox.execute``, i.e. the session round trip on the host
    side); ``hostloop``: glsandbox's host loop (seals the sessions' records);
    ``loop``: every other thread (Dask's event loop, comms);
    ``sandbox``: the sandboxed worker processes.
    """
    import threading

    from glsandbox_kernel.distributed.plugin import PLUGIN_NAME

    names = {t.native_id or 0: t.name for t in threading.enumerate()}
    out = _by_place(names, [("Dask-Default-Threads", "tasks"), ("glsandbox-", "hostloop")], "loop")
    out["sandbox"] = 0.0
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    pids: set[int] = set()
    if plugin is not None:
        for session in plugin.health(doctor=False)["sessions"]:
            pids.update(session["worker_pids"])
    for pid in pids:
        out["sandbox"] += sum(_thread_cpu(pid).values())
    return out


def _cpu(client: Any) -> dict[str, float]:
    """CPU seconds by place: this process (the executor's threads; the rest: client and scheduler), and every
    worker's places summed."""
    import threading

    names = {t.native_id or 0: t.name for t in threading.enumerate()}
    total = _by_place(names, [("glsandbox-", "executor")], "client")
    # A map's gather thread ends with the map, and its CPU leaves /proc/self/task with it: the
    # executor's share is what the process used (ended threads included) beyond the other threads.
    total["executor"] = time.process_time() - total["client"]
    total.update({"tasks": 0.0, "hostloop": 0.0, "loop": 0.0, "sandbox": 0.0})
    for places in client.run(_worker_cpu).values():
        for place, seconds in places.items():
            total[place] += seconds
    return total


PLACES = {
    "client": "the client process (client and scheduler, the caller's thread)",
    "executor": "the client process's executor threads (gathering results, sealing the run chain)",
    "tasks": "the Dask workers' task threads (the plugin and OSSandbox.execute)",
    "hostloop": "the Dask workers' glsandbox host loop (record sealing)",
    "loop": "the Dask workers' other threads (Dask's event loop, comms)",
    "sandbox": "the sandboxed worker processes",
}


def added_row(name: str, ours: list[float], theirs: list[float]) -> dict[str, Any]:
    """A row of milliseconds per call added (median over rounds), no target (report.py's ``added_ms``)."""
    a, b = statistics.median(ours), statistics.median(theirs)
    return {
        "name": name,
        "unit": "ms",
        "ours_ms": a * 1e3,
        "theirs_ms": b * 1e3,
        "added_ms": (a - b) * 1e3,
        "target_added_ms": None,
        "rounds": len(ours),
    }


def wait_1ms(x: int) -> int:
    """A plain task that lasts about as long as a sandboxed call, without using CPU."""
    time.sleep(0.001)
    return x + 1


def bench_calls(n: int, rounds: int) -> list[dict[str, Any]]:
    from distributed import Client

    from glsandbox_kernel.distributed import SandboxedExecutor
    from glsandbox_kernel.distributed.client import local_cluster

    config = create_config_by_level("strict")
    expected = [x + 1 for x in range(n)]
    with local_cluster(2) as cluster, Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
        mem = SandboxedExecutor(client, config)
        disk = SandboxedExecutor(client, config, audit_path=os.path.join(tmp, "run.jsonl"))
        # Every side submits one client.map of n tasks and waits for all results.
        sides: dict[str, Callable[[], Any]] = {
            "plain": lambda: client.gather(client.map(f, range(n), pure=False)),
            "memory": lambda: list(mem.map(f, range(n))),
            "file": lambda: list(disk.map(f, range(n))),
            "chunked": lambda: list(mem.map(f, range(n), chunksize=10)),
            "waiting": lambda: client.gather(client.map(wait_1ms, range(n), pure=False)),
        }
        for run in sides.values():  # sessions start once per worker: not part of the figure
            assert run() == expected
        times: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, dict[str, list[float]]] = {name: {place: [] for place in PLACES} for name in sides}
        names = list(sides)
        for index in range(rounds):
            # Each round starts one side later: no side always runs right after the same other one
            # (the sandboxed sides share the workers' sessions, and a map's first tasks carry the
            # records the previous sandboxed map left sealing).
            for name in names[index % len(names) :] + names[: index % len(names)]:
                run = sides[name]
                c0 = _cpu(client)
                t0 = time.perf_counter()
                assert run() == expected
                times[name].append((time.perf_counter() - t0) / n)
                c1 = _cpu(client)
                for place in PLACES:
                    cpu[name][place].append((c1[place] - c0[place]) / n)
        mem.shutdown()
        disk.shutdown()
        sessions = sum(h["sessions_started"] for h in mem.health(doctor=False).values())

    def total(name: str) -> list[float]:
        return [sum(per_round) for per_round in zip(*cpu[name].values(), strict=True)]

    plain = times["plain"]
    label = f"{n} small sandboxed calls, 2 Dask workers, per call, vs plain Dask tasks"
    extra = {"sessions_started": sessions}
    rows = [
        row(f"{label} (run chain in memory)", times["memory"], plain, CALLS_TARGET, **extra),
        row(f"{label} (run chain in a JSONL file)", times["file"], plain, CALLS_TARGET, **extra),
        row(f"{label} (map chunksize=10)", times["chunked"], plain, None, **extra),
        # What a call costs in CPU, all processes together: the figure a loaded machine skews least.
        row(f"{label}: CPU per call, all processes (run chain in memory)", total("memory"), total("plain"), None),
        # The file side's only extra work is one write + fsync per run-chain record (one per window of results).
        row(f"{label}: CPU per call, all processes (run chain in a JSONL file)", total("file"), total("plain"), None),
    ]
    # Where the added CPU goes, and what Dask alone charges for a task that lasts as long (it sleeps 1 ms).
    waiting = f"{n} plain Dask tasks that sleep 1 ms vs plain Dask tasks: CPU per call"
    for place, where in PLACES.items():
        rows.append(added_row(f"{label}: CPU per call in {where}", cpu["memory"][place], cpu["plain"][place]))
        if place in ("client", "loop"):  # where Dask alone charges for a longer task
            rows.append(added_row(f"{waiting} in {where}", cpu["waiting"][place], cpu["plain"][place]))
    rows.append(added_row(f"{waiting}, all processes", total("waiting"), total("plain")))
    return rows


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


def bench_notebooks(count: int, rounds: int) -> list[dict[str, Any]]:
    glsandbox = [sys.executable, "-m", "glsandbox_kernel.cli"]
    sequential: list[float] = []
    cluster: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = _notebooks(tmp, count)
        for _ in range(rounds):
            t0 = time.perf_counter()
            for path in paths:
                subprocess.run([*glsandbox, "run", path, "--level", "strict"], check=True, capture_output=True)
            sequential.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [*glsandbox, "run", "--cluster", "local:2", "--level", "strict", *paths],
                capture_output=True,
                text=True,
                check=False,
            )
            cluster.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError(f"glsandbox run --cluster exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    name = f"{count} notebooks: glsandbox run --cluster local:2 (cluster start included) vs one glsandbox run each"
    return [row(name, cluster, sequential, NOTEBOOKS_TARGET, unit="s")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--notebooks", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="call rounds (default 5, quick 3)")
    parser.add_argument("--notebook-rounds", type=int, default=None, help="default 2, quick 1")
    parser.add_argument("--only", choices=["calls", "notebooks"], default=None)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    if args.only != "notebooks":
        results += bench_calls(200, args.rounds or (3 if args.quick else 5))
    if args.only != "calls":
        count = args.notebooks or (6 if args.quick else 20)
        results += bench_notebooks(count, args.notebook_rounds or (1 if args.quick else 2))
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2))
        return
    print(f"{'benchmark':<112} {'ours':>10} {'theirs':>10} {'ratio':>6} {'spread':>11} {'target':>7}")
    for r in results:
        unit = r.get("unit", "ms")
        if "added_ms" in r:
            print(
                f"{r['name']:<112} {r['ours_ms']:>7.3g} {unit:<2} {r['theirs_ms']:>7.3g} {unit:<2} +{r['added_ms']:.2f} ms"
            )
            continue
        ok = "" if r["target"] is None else ("ok" if r["ratio"] <= r["target"] else "MISS")
        target = "-" if r["target"] is None else f"<={r['target']:.2f}"
        spread = f"{r['spread'][0]:.2f}-{r['spread'][1]:.2f}"
        print(
            f"{r['name']:<112} {r['ours_ms']:>7.3g} {unit:<2} {r['theirs_ms']:>7.3g} {unit:<2} {r['ratio']:>6.2f} "
            f"{spread:>11} {target:>7} {ok}"
        )
        if unit == "ms" and r["target"] is not None:
            print(f"{'':<4}throughput {1 / r['ratio']:.2f}x plain (target >= 0.8x)")


if __name__ == "__main__":
    main()
