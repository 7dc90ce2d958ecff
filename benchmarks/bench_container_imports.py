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

    python benchmarks/bench_container_imports.py [--rounds N] [--top N] [--save FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig
from glsandbox_kernel.backends.container import settings

TRACE = "/tmp/glsandbox-importtime.txt"


def _traced_command(original: Any) -> Any:
    def command(*args: Any, **kwargs: Any) -> list[str]:
        cmd = list(original(*args, **kwargs))
        # python3 FLAGS... -c CODE SPEC: the spec stays last (the launcher reads it back there)
        if cmd[0] != "python3" or cmd[-3] != "-c":
            raise SystemExit(f"unexpected worker command {cmd[:-1]}")
        script = f'exec python3 -X importtime {" ".join(cmd[1:-2])} "$0" "$1" 2>{TRACE}'
        return ["sh", "-c", script, cmd[-2], cmd[-1]]

    return command


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
    args = parser.parse_args()
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
