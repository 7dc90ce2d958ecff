"""The container worker's imports inside a real container: ``python3 -X importtime`` of the exact bootstrap.

A fresh container's start above Docker's create/start is mostly the
worker's imports (issue 13). Each round starts a CONTAINER sandbox whose
command is the backend's own (:func:`glsandbox_kernel.backends.container.settings.worker_command`,
same flags, code and spec, the image's module bundle bound as usual) with
``-X importtime`` added and the bootstrap's stderr sent to a file in the
container's /tmp, which the first call reads back; the sandbox is then closed.
Only the command changes: the seccomp listener, mounts and checks are the
backend's. Prints, per round, the number of modules and the sum of the
top-level cumulative times (the worker's whole import cost, interpreter
start-up included), then the median and spread, and the modules with the
largest cumulative time of the last round. (Imports after the first call,
cloudpickle's, still trace: to the worker's relayed stderr, so they show on
this script's stderr.) This figure is less noisy than
the cold start against ``docker run`` (``bench_container.py``), which it
does not replace. Compare trees by running each tree's python from its own
directory, alternating, and say the load (``uptime``).

``--cpu N``: instead of the trace, each round's container first runs the
same command N times up to the bootstrap's connect (an audit hook on
``socket.connect`` prints ``time.process_time()``, the CPU time of the whole
process since exec, interpreter start-up, imports and the seccomp filter's
load included, and exits), then N times ``python3 -c pass`` the same way (the
interpreter's own floor), then the real worker. CPU time is what the cold
start pays for on two shared cores and moves much less with load than any
wall-clock figure; the medians per round are printed.

    python benchmarks/bench_container_imports.py [--rounds N] [--top N] [--save FILE] [--cpu N]
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig
from glsandbox_kernel.backends.container import settings

TRACE = "/tmp/glsandbox-importtime.txt"
CPU = "/tmp/glsandbox-cpu.txt"
#: Run before the bootstrap's own code: at its first connect (the host's socket), print the CPU time, exit.
PROBE = (
    "import sys, time\n"
    "def _probe(event, args):\n"
    "    if event == 'socket.connect':\n"
    "        sys.stdout.write(f'{time.process_time()}\\n'); sys.stdout.flush(); __import__('os')._exit(0)\n"
    "sys.addaudithook(_probe)\n"
)
FLOOR = "import sys, time; sys.stdout.write(f'{time.process_time()}\\n')"


def _traced_command(original: Any) -> Any:
    def command(*args: Any, **kwargs: Any) -> list[str]:
        cmd = list(original(*args, **kwargs))
        # python3 FLAGS... -c CODE SPEC: the spec stays last (the launcher reads it back there)
        if cmd[0] != "python3" or cmd[-3] != "-c":
            raise SystemExit(f"unexpected worker command {cmd[:-1]}")
        script = f'exec python3 -X importtime {" ".join(cmd[1:-2])} "$0" "$1" 2>{TRACE}'
        return ["sh", "-c", script, cmd[-2], cmd[-1]]

    return command


def _cpu_command(original: Any, runs: int) -> Any:
    def command(*args: Any, **kwargs: Any) -> list[str]:
        cmd = list(original(*args, **kwargs))
        if cmd[0] != "python3" or cmd[-3] != "-c":
            raise SystemExit(f"unexpected worker command {cmd[:-1]}")
        flags = " ".join(cmd[1:-3])  # without the -c
        # $0 the bootstrap's code, $1 the probe, $2 the floor's code, $3 the spec (last, as the launcher reads it)
        script = (
            f'i=0; while [ $i -lt {runs} ]; do python3 {flags} -c "$1$0" "$3" >>{CPU}; i=$((i+1)); done; '
            f'echo floor >>{CPU}; i=0; while [ $i -lt {runs} ]; do python3 {flags} -c "$2" >>{CPU}; i=$((i+1)); done; '
            f'exec python3 {flags} -c "$0" "$3"'
        )
        return ["sh", "-c", script, cmd[-2], PROBE, FLOOR, cmd[-1]]

    return command


def _read_cpu() -> str:
    with open(CPU) as fh:
        return fh.read()


def cpu_round() -> tuple[float, float]:
    """Median CPU ms of the bootstrap up to its connect, and of ``python3 -c pass``, in one container."""
    sandbox = OSSandbox(OSSandboxConfig(isolation_type=IsolationType.CONTAINER))
    try:
        text = sandbox.execute(_read_cpu)
    finally:
        sandbox.close()
    ours, _, floor = text.partition("floor\n")
    return (
        statistics.median(float(x) * 1e3 for x in ours.split()),
        statistics.median(float(x) * 1e3 for x in floor.split()),
    )


def _read_trace() -> str:
    with open(TRACE) as fh:
        return fh.read()


def parse(text: str) -> list[tuple[int, int, str]]:
    """``(self us, cumulative us, name with its indent)`` per importtime line."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = line[len("import time:") :].split("|")
        if len(fields) == 3 and fields[0].strip().isdigit():
            rows.append((int(fields[0]), int(fields[1]), fields[2][1:].rstrip()))
    return rows


def one_round() -> list[tuple[int, int, str]]:
    sandbox = OSSandbox(OSSandboxConfig(isolation_type=IsolationType.CONTAINER))
    try:
        return parse(sandbox.execute(_read_trace))
    finally:
        sandbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--save", help="write the last round's importtime trace here")
    parser.add_argument("--cpu", type=int, default=0, help="CPU time of N runs per round instead of the trace")
    args = parser.parse_args()
    if args.cpu:
        settings.worker_command = _cpu_command(settings.worker_command, args.cpu)  # type: ignore[method-assign]
        print(f"load: {os.getloadavg()}")
        results = []
        for i in range(args.rounds):
            ours, floor = cpu_round()
            results.append((ours, floor))
            print(f"round {i}: bootstrap to connect {ours:.1f} ms CPU, python3 -c pass {floor:.1f} ms", flush=True)
        above = [o - f for o, f in results]
        print(
            f"median {statistics.median(o for o, _ in results):.1f} ms CPU, above python3 -c pass "
            f"{statistics.median(above):.1f} ms (min {min(above):.1f}, max {max(above):.1f}); load {os.getloadavg()}"
        )
        return
    settings.worker_command = _traced_command(settings.worker_command)  # type: ignore[method-assign]
    print(f"load: {os.getloadavg()}")
    totals = []
    rows: list[tuple[int, int, str]] = []
    for i in range(args.rounds):
        rows = one_round()
        total = sum(cum for _self, cum, name in rows if not name.startswith(" "))
        totals.append(total / 1000)
        print(f"round {i}: {len(rows)} modules, {total / 1000:.1f} ms", flush=True)
    print(f"median {statistics.median(totals):.1f} ms (min {min(totals):.1f}, max {max(totals):.1f})")
    for _self, cum, name in sorted(rows, key=lambda r: -r[1])[: args.top]:
        print(f"{cum / 1000:8.2f} ms  {name}")
    if args.save:
        with open(args.save, "w") as fh:
            fh.write("".join(f"import time: {s:9} | {c:10} | {n}\n" for s, c, n in rows))


if __name__ == "__main__":
    main()
