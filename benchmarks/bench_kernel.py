"""Kernel and magic benchmarks (issue 4), each side by side with its comparison.

1. Per-cell round trip: ``execute("x = 1 + 1")`` and wait for idle through
   jupyter_client, ``glsandbox`` kernel vs the stock ``python3`` ipykernel,
   200 cells per round after a warm-up (target ratio <= 1.2).
2. Kernel start until ready (kernel_info reply), and until the first cell
   has run (target <= 1.05): the sandbox's worker starts while the kernel
   starts. Both sides' modules are compiled first (:func:`compile_package`),
   as an installed package's are; the spread of the per-round ratios is given.
   Both kernels start the same way (``start_new_kernel``, this cwd, this
   interpreter). With ``$GLSANDBOX_KERNEL_TRACE=FILE`` the glsandbox kernel
   appends ``<time.monotonic()> <pid> <mark>`` lines to FILE (import done,
   template started, config loaded, kernel started, kernel_info replied, the
   early sandbox's go, sandbox started, shell answered, execute begin/end):
   where a start spends its time. ``start_new_kernel`` returns ("ready") once
   IOPub has been quiet for 0.2 s after the kernel_info reply
   (``wait_for_ready``, as nbclient and papermill): the glsandbox kernel
   starts its sandbox's host side once ipykernel's set-up is done, so the
   first cell's row is the one that shows whether that start fits.
3. Restart (``restart_kernel`` until ready) (targets <= 1.5).
4. A ``%%sandbox`` cell in a warm session vs the same code run locally, in
   the same stock kernel: the added milliseconds (target <= 3 ms), through
   jupyter_client and, second row, timed inside the kernel
   (``run_cell_magic`` vs ``run_cell``), without the protocol around it.

Rounds alternate between the two sides so machine noise hits both alike; the
figure is the median over rounds. The glsandbox kernelspecs are installed
into a temporary prefix first (``glsandbox install --prefix``). Prints a
table and, with ``--json``, JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

CELL = "x = 1 + 1"
ROWS = ("round_trip", "ready", "first_cell", "restart", "magic")


def install_kernelspecs(prefix: str) -> None:
    from glsandbox_kernel.kernel.install import install_kernelspecs as install

    install(prefix=prefix)
    data = os.path.join(prefix, "share", "jupyter")
    os.environ["JUPYTER_PATH"] = data + (
        os.pathsep + os.environ["JUPYTER_PATH"] if "JUPYTER_PATH" in os.environ else ""
    )


def run_cell(kc: BlockingKernelClient, code: str) -> dict[str, Any]:
    """Execute ``code`` and wait for its idle status and reply."""
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            break
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return dict(reply["content"])


def per_cell(kc: BlockingKernelClient, code: str, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        run_cell(kc, code)
    return (time.perf_counter() - t0) / n


def alternate(a: Callable[[], float], b: Callable[[], float], rounds: int) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(a())
        tb.append(b())
    return statistics.median(ta), statistics.median(tb)


def bench_round_trip(n: int, rounds: int, warmup: int) -> dict[str, Any]:
    ours_km, ours = start_new_kernel(kernel_name="glsandbox")
    theirs_km, theirs = start_new_kernel(kernel_name="python3")
    try:
        per_cell(ours, CELL, warmup)
        per_cell(theirs, CELL, warmup)
        a, b = alternate(lambda: per_cell(ours, CELL, n), lambda: per_cell(theirs, CELL, n), rounds)
    finally:
        for km, kc in ((ours_km, ours), (theirs_km, theirs)):
            kc.stop_channels()
            km.shutdown_kernel()
    return {
        "name": f"per-cell round trip '{CELL}' glsandbox vs python3",
        "ours_ms": a * 1e3,
        "theirs_ms": b * 1e3,
        "ratio": a / b,
        "target": 1.2,
    }


def _start(name: str, first_cell: bool) -> float:
    t0 = time.perf_counter()
    km, kc = start_new_kernel(kernel_name=name)
    if first_cell:
        run_cell(kc, CELL)
    took = time.perf_counter() - t0
    kc.stop_channels()
    km.shutdown_kernel()
    return took


def bench_start(rounds: int, first_cell: bool) -> dict[str, Any]:
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        ours.append(_start("glsandbox", first_cell))
        theirs.append(_start("python3", first_cell))
    a, b = statistics.median(ours), statistics.median(theirs)
    ratios = [x / y for x, y in zip(ours, theirs, strict=True)]
    what = "start until first cell ran" if first_cell else "start until ready"
    return {
        "name": f"kernel {what}, glsandbox vs python3",
        "ours_ms": a * 1e3,
        "theirs_ms": b * 1e3,
        "ratio": a / b,
        "spread": [min(ratios), max(ratios)],
        "target": 1.05 if first_cell else 1.5,
    }


def compile_package() -> None:
    """Write glsandbox_kernel's bytecode, as an installed package has it (pip compiles wheels).

    The stock kernel's modules are compiled at install; an editable checkout under
    PYTHONDONTWRITEBYTECODE would otherwise compile ours from source at every start.
    """
    import compileall

    import glsandbox_kernel

    compileall.compile_dir(os.path.dirname(glsandbox_kernel.__file__), quiet=1)


def _restart(km: KernelManager, kc: BlockingKernelClient) -> float:
    t0 = time.perf_counter()
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    return time.perf_counter() - t0


def bench_restart(rounds: int) -> dict[str, Any]:
    ours_km, ours = start_new_kernel(kernel_name="glsandbox")
    theirs_km, theirs = start_new_kernel(kernel_name="python3")
    try:
        run_cell(ours, CELL)
        run_cell(theirs, CELL)
        a, b = alternate(lambda: _restart(ours_km, ours), lambda: _restart(theirs_km, theirs), rounds)
    finally:
        for km, kc in ((ours_km, ours), (theirs_km, theirs)):
            kc.stop_channels()
            km.shutdown_kernel()
    return {
        "name": "kernel restart until ready, glsandbox vs python3",
        "ours_ms": a * 1e3,
        "theirs_ms": b * 1e3,
        "ratio": a / b,
        "target": 1.5,
    }


_IN_KERNEL = """
import json, statistics, time
_ip = get_ipython()
def _tm(f, n):
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n
_a, _b = [], []
for _ in range({rounds}):
    _a.append(_tm(lambda: _ip.run_cell_magic("sandbox", "", {cell!r}), {n}))
    _b.append(_tm(lambda: _ip.run_cell({cell!r}, store_history=False), {n}))
print(json.dumps([statistics.median(_a), statistics.median(_b)]))
"""


def bench_magic(n: int, rounds: int, warmup: int) -> list[dict[str, Any]]:
    km, kc = start_new_kernel(kernel_name="python3")
    magic = f"%%sandbox\n{CELL}"
    try:
        assert run_cell(kc, "%load_ext glsandbox_kernel")["status"] == "ok"
        per_cell(kc, magic, warmup)
        per_cell(kc, CELL, warmup)
        a, b = alternate(lambda: per_cell(kc, magic, n), lambda: per_cell(kc, CELL, n), rounds)
        # The same comparison inside the kernel, without the Jupyter protocol around each cell.
        msg_id = kc.execute(_IN_KERNEL.format(rounds=rounds, n=n, cell=CELL))
        inner = None
        while inner is None:
            msg = kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                inner = json.loads(msg["content"]["text"])
        run_cell(kc, "%sandbox stop")
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    return [
        {
            "name": f"%%sandbox warm cell vs local '{CELL}' (same kernel)",
            "ours_ms": a * 1e3,
            "theirs_ms": b * 1e3,
            "ratio": a / b,
            "added_ms": (a - b) * 1e3,
            "target_added_ms": 3.0,
        },
        {
            "name": "  same, timed inside the kernel (no protocol)",
            "ours_ms": inner[0] * 1e3,
            "theirs_ms": inner[1] * 1e3,
            "ratio": inner[0] / inner[1],
            "added_ms": (inner[0] - inner[1]) * 1e3,
            "target_added_ms": 3.0,
        },
    ]


def print_table(results: list[dict[str, Any]]) -> None:
    """The README's table format: ours, theirs, ratio (or added ms), target."""
    print(f"{'benchmark':<62} {'ours':>10} {'theirs':>10} {'ratio':>7} {'target':>9}")
    for r in results:
        if "target_added_ms" in r:
            ok = "ok" if r["added_ms"] <= r["target_added_ms"] else "MISS"
            print(
                f"{r['name']:<62} {r['ours_ms']:>7.3f} ms {r['theirs_ms']:>7.3f} ms {r['ratio']:>7.2f} "
                f"{'+' + format(r['added_ms'], '.2f') + ' ms':>9} (<= +{r['target_added_ms']:g} ms) {ok}"
            )
            continue
        ok = "ok" if r["ratio"] <= r["target"] else "MISS"
        spread = f" [{r['spread'][0]:.2f}-{r['spread'][1]:.2f}]" if "spread" in r else ""
        print(
            f"{r['name']:<62} {r['ours_ms']:>7.1f} ms {r['theirs_ms']:>7.1f} ms {r['ratio']:>7.2f} "
            f"{'<=' + str(r['target']):>9} {ok}{spread}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"which rows, of {','.join(ROWS)}")
    parser.add_argument("--starts", type=int, default=None, help="rounds of the start rows")
    args = parser.parse_args()
    n, rounds, warmup, starts = (50, 3, 10, 3) if args.quick else (200, 5, 50, 7)
    starts = args.starts or starts
    rows = {
        "round_trip": lambda: [bench_round_trip(n, rounds, warmup)],
        "ready": lambda: [bench_start(starts, first_cell=False)],
        "first_cell": lambda: [bench_start(starts, first_cell=True)],
        "restart": lambda: [bench_restart(starts)],
        "magic": lambda: bench_magic(n, rounds, warmup),
    }
    compile_package()
    with tempfile.TemporaryDirectory(prefix="glsandbox-bench-") as prefix:
        install_kernelspecs(prefix)
        results = [r for name in args.rows.split(",") for r in rows[name]()]
    print_table(results)
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2))


if __name__ == "__main__":
    main()
