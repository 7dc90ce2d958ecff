"""Output streaming benchmark (issue 14): a kernel cell printing 50 MB as 500k lines.

glsandbox kernel vs the stock ``python3`` ipykernel, side by side in
alternating rounds through jupyter_client: seconds from ``execute`` until
the idle status, and the number of ``stream`` messages the frontend got
(ipykernel's OutStream coalesces at a bounded rate; so does our relay).
A second, smaller size shows whether the time is linear in the size.
Prints a table and, with ``--json``, JSON rows for ``report.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel

try:
    from bench_kernel import install_kernelspecs, run_cell
except ImportError:  # run as benchmarks/bench_output.py from elsewhere
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from bench_kernel import install_kernelspecs, run_cell

CELL = "_line = 'x' * 99\nfor _ in range({lines}):\n    print(_line)\n"


def print_cell(kc: BlockingKernelClient, lines: int) -> tuple[float, int, int]:
    """Seconds until idle, stream messages, characters received."""
    t0 = time.perf_counter()
    msg_id = kc.execute(CELL.format(lines=lines))
    messages = chars = 0
    while True:
        msg = kc.get_iopub_msg(timeout=600)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            messages += 1
            chars += len(msg["content"]["text"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    took = time.perf_counter() - t0
    while kc.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
        pass
    return took, messages, chars


def bench_print(lines: int, rounds: int) -> dict[str, Any]:
    ours_km, ours = start_new_kernel(kernel_name="glsandbox")
    theirs_km, theirs = start_new_kernel(kernel_name="python3")
    want = lines * 100
    try:
        run_cell(ours, "1")
        run_cell(theirs, "1")
        a: list[float] = []
        b: list[float] = []
        ma: list[int] = []
        mb: list[int] = []
        for _ in range(rounds):
            for kc, times, msgs in ((ours, a, ma), (theirs, b, mb)):
                took, n, chars = print_cell(kc, lines)
                if chars != want:
                    raise SystemExit(f"received {chars} characters of {want}")
                times.append(took)
                msgs.append(n)
    finally:
        for km, kc in ((ours_km, ours), (theirs_km, theirs)):
            kc.stop_channels()
            km.shutdown_kernel()
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return {
        "name": f"kernel cell printing {want / 1e6:g} MB as {lines} lines, glsandbox vs python3",
        "unit": "s",
        "ours_ms": statistics.median(a),
        "theirs_ms": statistics.median(b),
        "ratio": statistics.median(a) / statistics.median(b),
        "spread": [min(ratios), max(ratios)],
        "ours_messages": int(statistics.median(ma)),
        "theirs_messages": int(statistics.median(mb)),
        "target": 1.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke run)")
    parser.add_argument("--lines", type=int, default=500_000)
    args = parser.parse_args()
    rounds = 2 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="glsandbox-bench-") as prefix:
        install_kernelspecs(prefix)
        results = [bench_print(args.lines, rounds), bench_print(args.lines // 5, rounds)]
    for r in results:
        print(
            f"{r['name']:<70} {r['ours_ms']:7.2f} s ({r['ours_messages']} msgs) {r['theirs_ms']:7.2f} s "
            f"({r['theirs_messages']} msgs) ratio {r['ratio']:.2f} [{r['spread'][0]:.2f}-{r['spread'][1]:.2f}]"
            f" target <= {r['target']:g}"
        )
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2))


if __name__ == "__main__":
    main()
