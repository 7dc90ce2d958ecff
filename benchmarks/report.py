"""Run every benchmark script and print the README's Markdown table.

``python benchmarks/report.py`` runs each ``bench_*.py`` with ``--json``
(in turn, never in parallel) and turns the rows into one table: ours,
comparison, ratio (or added ms) with the spread of per-round ratios where
the script reports it, target and whether it was met. Extra arguments
(e.g. ``--quick``) go to every script; ``--only=data,output`` runs the
scripts whose names contain one of the words. Used to refresh the README.
"""

from __future__ import annotations

import json
import subprocess
import sys
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


def rows_of(script: str, extra: list[str]) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, str(HERE / script), "--json", *extra], capture_output=True, text=True)
    if proc.returncode != 0:
        return [{"name": f"{script}: failed ({proc.stderr.strip().splitlines()[-1:]})"}]
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line[:1] in ("[", "{"))
    data = json.loads("\n".join(lines[start:]))
    return list(data["results"] if isinstance(data, dict) else data)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return f"{value:.3g} {unit}" if value < 10 else f"{value:.1f} {unit}"


def main() -> None:
    extra = [a for a in sys.argv[1:] if not a.startswith("--only=")]
    only = [w for a in sys.argv[1:] if a.startswith("--only=") for w in a.split("=", 1)[1].split(",")]
    scripts = [s for s in SCRIPTS if not only or any(o in s for o in only)]
    print("| benchmark | ours | comparison | ratio (spread) | target | met |")
    print("|---|---|---|---|---|---|")
    for script in scripts:
        for r in rows_of(script, extra):
            if "ours_ms" not in r:
                print(f"| {r['name']} | | | | |")
                continue
            unit = r.get("unit", "ms")
            met = ""
            if "added_ms" in r:
                ratio = f"+{r['added_ms']:.2f} ms"
                target = f"<= +{r['target_added_ms']:g} ms" if r.get("target_added_ms") is not None else ""
                if r.get("target_added_ms") is not None:
                    met = "yes" if r["added_ms"] <= r["target_added_ms"] else "no"
            else:
                ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
                target = f"<= {r['target']:g}" if r.get("target") is not None else "reported"
                if r.get("target") is not None and r.get("ratio") is not None:
                    met = "yes" if r["ratio"] <= r["target"] else "no"
            if r.get("spread"):
                ratio += f" ({r['spread'][0]:.2f}-{r['spread'][1]:.2f})"
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


if __name__ == "__main__":
    main()
