"""Run every benchmark script and print the README's Markdown table.

``python benchmarks/report.py`` runs each ``bench_*.py`` with ``--json``
(in turn, never in parallel) and turns the rows into one table: ours,
comparison, ratio (or added ms) with the spread of per-round ratios where
the script reports it, target and whether it was met. Options:

- ``--only=data,output``: the scripts whose names contain one of the words;
- ``--repeat N``: run each script N times (one after the other); each row then
  shows the median of its N figures and, as the spread, the lowest and highest
  of its N ratios (or added ms);
- ``--timeout S``: a script still running after S seconds is stopped and its
  row says so (default: no limit).

Every other argument (e.g. ``--quick``) goes to every script. The wall time
of each script run is printed to stderr as it ends, and all of them at the end,
so a quiet run can be planned. Used to refresh the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_engine.py",
    "bench_data.py",
    "bench_output.py",
    "bench_sessions.py",
    "bench_confinement.py",
    "bench_kernel.py",
    "bench_container.py",
    "bench_vm.py",
    "bench_distributed.py",
]


def rows_of(script: str, extra: list[str], timeout: float | None = None) -> list[dict[str, Any]]:
    """One run of ``script --json``: its result rows (or one row naming the failure)."""
    cmd = [sys.executable, str(HERE / script), "--json", *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"name": f"{script}: stopped after {timeout:g} s"}]
    if proc.returncode != 0:
        return [{"name": f"{script}: failed ({proc.stderr.strip().splitlines()[-1:]})"}]
    lines = proc.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line[:1] in ("[", "{")), None)
    if start is None:
        return [{"name": f"{script}: printed no JSON"}]
    data = json.loads("\n".join(lines[start:]))
    return list(data["results"] if isinstance(data, dict) else data)


def combine(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of repeated runs of one script, by name: medians of the figures, spread of the runs' ratios.

    A row missing from some runs is combined from the runs that have it; with
    one run the rows are returned as they are (their own per-round spread kept).
    """
    if len(runs) == 1:
        return runs[0]
    names: list[str] = []
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rows in runs:
        for r in rows:
            if r["name"] not in by_name:
                names.append(r["name"])
            by_name.setdefault(r["name"], []).append(r)
    out = []
    for name in names:
        rows = by_name[name]
        if "ours_ms" not in rows[0]:
            out.append(rows[0])
            continue
        row = dict(rows[0])
        for key in ("ours_ms", "theirs_ms", "ratio", "added_ms"):
            if key not in row:
                continue
            values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
            row[key] = statistics.median(values) if values else None
        key = "added_ms" if "added_ms" in row else "ratio"
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        row["spread"] = [min(values), max(values)] if values else None
        row["runs"] = len(rows)
        out.append(row)
    return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return f"{value:.3g} {unit}" if value < 10 else f"{value:.1f} {unit}"


def print_row(script: str, r: dict[str, Any]) -> None:
    """One Markdown row: ours, comparison, ratio or added ms (with its spread), target, met."""
    if "ours_ms" not in r:
        print(f"| {r['name']} | | | | | |")
        return
    unit = r.get("unit", "ms")
    met = ""
    if "added_ms" in r:
        ratio = f"+{r['added_ms']:.2f} ms" if r.get("added_ms") is not None else ""
        target = f"<= +{r['target_added_ms']:g} ms" if r.get("target_added_ms") is not None else ""
        if r.get("target_added_ms") is not None and r.get("added_ms") is not None:
            met = "yes" if r["added_ms"] <= r["target_added_ms"] else "no"
    else:
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        target = f"<= {r['target']:g}" if r.get("target") is not None else "reported"
        if r.get("target") is not None and r.get("ratio") is not None:
            met = "yes" if r["ratio"] <= r["target"] else "no"
    if r.get("spread"):
        ratio += f" ({r['spread'][0]:.2f}-{r['spread'][1]:.2f}{', ' + str(r['runs']) + ' runs' if 'runs' in r else ''})"
    notes = []
    if "ours_messages" in r:
        notes.append(f"{r['ours_messages']} vs {r['theirs_messages']} messages")
    if "ours_worker_peak" in r:
        notes.append(
            f"peak/data host {r['ours_host_peak']:.2f} vs {r['pool_host_peak']:.2f}, "
            f"worker {r['ours_worker_peak']:.2f} vs {r['pool_worker_peak']:.2f}"
        )
    note = f" ({'; '.join(notes)})" if notes else ""
    print(
        f"| {r['name']}{note} (`{script}`) | {fmt(r['ours_ms'], unit)} | {fmt(r.get('theirs_ms'), unit)} "
        f"| {ratio} | {target} | {met} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated words: the scripts whose names hold one")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each script (median and spread)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds a script run may take")
    args, extra = parser.parse_known_args()
    only = [w for w in args.only.split(",") if w]
    scripts = [s for s in SCRIPTS if not only or any(o in s for o in only)]
    walls: dict[str, list[float]] = {}
    print("| benchmark | ours | comparison | ratio (spread) | target | met |")
    print("|---|---|---|---|---|---|")
    for script in scripts:
        runs = []
        for _ in range(max(1, args.repeat)):
            t0 = time.monotonic()
            runs.append(rows_of(script, extra, args.timeout))
            walls.setdefault(script, []).append(time.monotonic() - t0)
            print(f"{script}: {walls[script][-1]:.1f} s", file=sys.stderr, flush=True)
        for r in combine(runs):
            print_row(script, r)
        sys.stdout.flush()
    print("\nwall time per script run:", file=sys.stderr)
    for script, times in walls.items():
        print(f"  {script}: {', '.join(f'{t:.1f} s' for t in times)}", file=sys.stderr)


if __name__ == "__main__":
    main()
