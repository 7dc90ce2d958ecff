"""The start's scan of a project folder for masked names and doors (:func:`glsandbox_kernel.project.find_masked`).

Every kernel start walks its project folder; a checkout whose ``.cache`` holds root trees has tens of
thousands of entries. ``python benchmarks/bench_scan.py FOLDER [--runs N] [--budget N]`` walks FOLDER
(read only) once to warm the dentry cache, then N times, and prints the minimum and the maximum in seconds,
the entries and hits found. To compare two trees, run it alternately with ``PYTHONPATH=<tree>`` in one
period and say the load (``uptime``).
"""

from __future__ import annotations

import argparse
import os
import time

from glsandbox_kernel import create_config_by_level
from glsandbox_kernel.project import find_masked


def _entries(folder: str) -> int:
    """Entries below ``folder``, symlinks not followed (what any tree's walk visits, masked folders aside)."""
    count, todo = 0, [folder]
    while todo:
        try:
            with os.scandir(todo.pop()) as it:
                for entry in it:
                    count += 1
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
        except OSError:
            continue
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=int, default=1_000_000)
    args = parser.parse_args()
    patterns = create_config_by_level("moderate").filesystem.masked_names
    entries = _entries(args.folder)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        found = find_masked(args.folder, patterns, budget=args.budget)
        times.append(time.perf_counter() - start)
    print(f"find_masked {args.folder}: min {min(times):.3f} s, max {max(times):.3f} s, ", end="")
    print(f"{entries} entries, {len(found)} found")


if __name__ == "__main__":
    main()
