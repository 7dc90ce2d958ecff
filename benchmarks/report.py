"""Run every benchmark script and print the README's Markdown table.

``python benchmarks/report.py`` runs each ``bench_*.py`` with ``--json``
(in turn, never in parallel) and turns the rows into one table: ours,
comparison, ratio (or added ms) and target. Used to refresh the README.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_engine.py", "bench_confinement.py", "bench_kernel.py", "bench_container.py", "bench_vm.py"]


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
    extra = sys.argv[1:]
    print("| benchmark | ours | comparison | ratio | target |")
    print("|---|---|---|---|---|")
    for script in SCRIPTS:
        for r in rows_of(script, extra):
            if "ours_ms" not in r:
                print(f"| {r['name']} | | | | |")
                continue
            unit = r.get("unit", "ms")
            if "added_ms" in r:
                ratio = f"+{r['added_ms']:.2f} ms"
                target = f"<= +{r['target_added_ms']:g} ms" if r.get("target_added_ms") is not None else ""
            else:
                ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
                target = f"<= {r['target']:g}" if r.get("target") is not None else "reported"
            print(
                f"| {r['name']} (`{script}`) | {fmt(r['ours_ms'], unit)} | {fmt(r.get('theirs_ms'), unit)} "
                f"| {ratio} | {target} |"
            )


if __name__ == "__main__":
    main()
