"""Where the time of one fresh NAMESPACE sandbox goes (issue 14), step by step.

Host-side marks (``time.monotonic()``) around the backend's start, the cgroup,
the zygote request, the hello, the call and close, merged with the child-side
marks of a traced template (:mod:`_zygote_trace`: fork, each confinement step
in P1, the init and the worker). The warm pool is off, so every call forks a
new sandbox; a pause before each call keeps them apart. Prints, per mark, the
median time since ``OSSandbox()`` and the step before it, over ``--n`` calls.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel import zygote as _zygote
from glsandbox_kernel.backends import zygote_worker
from glsandbox_kernel.backends.zygote_backend import POOLS, ZygoteBackend
from glsandbox_kernel.session import Session

HOST: list[tuple[str, float]] = []


def f(x: int = 1) -> int:
    return x


def _wrap(owner: Any, name: str, label: str) -> None:
    orig = getattr(owner, name)

    def run(*args: Any, **kwargs: Any) -> Any:
        HOST.append((label + " <", time.monotonic()))
        try:
            return orig(*args, **kwargs)
        finally:
            HOST.append((label + " >", time.monotonic()))

    setattr(owner, name, run)


class _TracedPopen:
    """``subprocess`` for the zygote module: starts the traced template instead."""

    DEVNULL = subprocess.DEVNULL
    TimeoutExpired = subprocess.TimeoutExpired

    @staticmethod
    def Popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        here = os.path.dirname(os.path.abspath(__file__))
        kwargs["env"] = {**kwargs.get("env", {}), "PYTHONPATH": here + os.pathsep + kwargs["env"]["PYTHONPATH"]}
        return subprocess.Popen([args[0], "-s", os.path.join(here, "_zygote_trace.py"), args[-1]], **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    _zygote.subprocess = _TracedPopen  # type: ignore[assignment]
    _wrap(ZygoteBackend, "start", "host: backend.start")
    _wrap(ZygoteBackend, "_make_cgroup", "host: cgroup create")
    _wrap(_zygote.ZygoteClient, "spawn", "host: zygote spawn request")
    _wrap(ZygoteBackend, "connect", "host: wait for hello")
    _wrap(ZygoteBackend, "on_hello", "host: on_hello (supervisor, pids, cgroup)")
    _wrap(Session, "request", "host: the call")
    _wrap(Session, "close", "host: close")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE)
    POOLS.set_size(0)
    rows: dict[str, list[float]] = collections.defaultdict(list)
    try:
        for i in range(args.n + 1):
            time.sleep(args.gap)
            HOST.clear()
            t0 = time.monotonic()
            with OSSandbox(cfg) as box:
                box.execute(f)
                trace = box.session.worker_report.get("trace", [])
            t1 = time.monotonic()
            if i == 0:
                continue  # the template's start
            for label, t in [*HOST, *((f"child: {m[0]}", m[2]) for m in trace)]:
                rows[label].append((t - t0) * 1e3)
            rows["total (OSSandbox() to close() returned)"].append((t1 - t0) * 1e3)
    finally:
        POOLS.set_size(None)
        zygote_worker.flush_cleanups()
        _zygote.get_zygote(sys.executable).close()
    med = sorted(((statistics.median(v), k) for k, v in rows.items()), key=lambda x: x[0])
    prev = 0.0
    print(f"{'mark':<52} {'at ms':>8} {'step ms':>8}")
    for at, label in med:
        print(f"{label:<52} {at:8.2f} {at - prev:8.2f}")
        prev = at
    if args.json:
        print(json.dumps({k: statistics.median(v) for k, v in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
