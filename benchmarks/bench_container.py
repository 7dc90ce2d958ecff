"""Container backend benchmarks (issue 6), each side by side with its comparison.

1. Fresh container sandbox, cold (no warm pool): ``OSSandbox(...).execute(f, 1)``
   plus ``close()`` against ``docker run --rm --network none IMAGE python3 -c pass``.
   Our container's removal runs in a background reaper after close; the
   figure "incl. removal" also waits for it (reported, no target).
2. Fresh container sandbox from the warm pool (pool refilled between rounds,
   not timed) against the same ``docker run``; and back to back (sessions
   that follow each other with no pause: the pool refills in parallel and
   its size follows the rate of takes), against the same ``docker run``.
3. Warm-session round trip ``execute(f, 1)``: CONTAINER against BASIC.
4. GVISOR (the same container under gVisor's runsc): the fresh cold sandbox
   against ``docker run --rm --runtime=runsc --network none IMAGE python3 -c
   pass`` (target <= 0.8), and the warm-session round trip against BASIC;
   skipped, with the reason, when runsc is not registered (scripts/dockerd-up
   registers it). The runsc platform in use is printed (systrap where this
   runsc has it, else ptrace; see scripts/dockerd-up).

Rounds alternate between the two sides so machine noise hits both alike; the
figure is the median over rounds. Prints a table and, with ``--json``, JSON.
Needs a running Docker daemon and the image (scripts/dockerd-up,
scripts/build-test-image).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig
from glsandbox_kernel.backends import docker_pool
from glsandbox_kernel.backends.container import ContainerBackend, default_image, flush_removals
from glsandbox_kernel.backends.gvisor import RUNSC, GVisorBackend

CONTAINER = OSSandboxConfig(isolation_type=IsolationType.CONTAINER)
GVISOR = OSSandboxConfig(isolation_type=IsolationType.GVISOR)
BASIC = OSSandboxConfig(isolation_type=IsolationType.BASIC)


def f(x: int) -> int:
    return x


def docker_run(runtime: str | None = None) -> None:
    """``docker run --rm [--runtime=R] --network none IMAGE python3 -c pass``."""
    flags = [f"--runtime={runtime}"] if runtime else []
    subprocess.run(
        ["docker", "run", "--rm", *flags, "--network", "none", default_image(), "python3", "-c", "pass"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def fresh_sandbox(config: OSSandboxConfig = CONTAINER) -> None:
    with OSSandbox(config) as box:
        box.execute(f, 1)


def clock(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def row(name: str, ours: float, theirs: float, target: float | None, unit: str = "ms") -> dict[str, Any]:
    return {
        "name": name,
        "ours_ms": ours * 1e3,
        "theirs_ms": theirs * 1e3,
        "ratio": ours / theirs,
        "target": target,
        "unit": unit,
    }


def bench_cold(rounds: int, config: OSSandboxConfig = CONTAINER, runtime: str | None = None) -> list[dict[str, Any]]:
    """Fresh sandbox without the pool against ``docker run`` with the same runtime."""
    docker_pool.set_pool_size(0)
    fresh_sandbox(config)  # daemon connection, image check: once per host process
    docker_run(runtime)
    flush_removals()
    ours, with_removal, theirs = [], [], []
    for _ in range(rounds):
        t = clock(lambda: fresh_sandbox(config))
        ours.append(t)
        with_removal.append(t + clock(flush_removals))
        theirs.append(clock(lambda: docker_run(runtime)))
    d = statistics.median(theirs)
    if runtime is None:
        name, target = "fresh container, cold: execute(f,1)+close vs docker run", 0.5
    else:
        name, target = f"fresh gvisor, cold: execute(f,1)+close vs docker run --runtime={runtime}", 0.8
    return [
        row(name, statistics.median(ours), d, target),
        row("  same, incl. waiting for background removal", statistics.median(with_removal), d, None),
    ]


def bench_pool(rounds: int) -> dict[str, Any]:
    docker_pool.set_pool_size(2)
    backend = ContainerBackend(CONTAINER)
    pool = docker_pool.get_pool(backend.pool_key(), lambda: backend._launch("pool"))
    ours, theirs = [], []
    for _ in range(rounds):
        pool.wait_ready(2, timeout=120)
        ours.append(clock(fresh_sandbox))
        pool.wait_ready(2, timeout=120)
        flush_removals()
        theirs.append(clock(docker_run))
    docker_pool.drain_all()
    docker_pool.set_pool_size(0)
    flush_removals()
    return row(
        "fresh container from warm pool: execute(f,1)+close vs docker run",
        statistics.median(ours),
        statistics.median(theirs),
        0.1,
    )


def runsc_platform() -> str:
    """The ``--platform`` the runsc registration uses (default ptrace)."""
    from glsandbox_kernel.backends.container import daemon_info

    info, _ = daemon_info()
    args = ((info or {}).get("Runtimes") or {}).get(RUNSC, {}).get("runtimeArgs") or []
    return next((a.split("=", 1)[1] for a in args if a.lstrip("-").startswith("platform=")), "ptrace")


def bench_pool_back_to_back(rounds: int, per_round: int) -> dict[str, Any]:
    """Bursts of fresh pooled sandboxes one right after the other against ``docker run``.

    Between bursts (a pause, not timed) the pool refills to the size the
    previous burst taught it; the first burst starts from the floor (2).
    """
    docker_pool.set_pool_size(2)
    backend = ContainerBackend(CONTAINER)
    pool = docker_pool.get_pool(backend.pool_key(), lambda: backend._launch("pool"))
    ours, theirs = [], []
    for _ in range(rounds):
        pool.wait_ready(docker_pool.adaptive_size(), timeout=120)
        flush_removals()
        ours += [clock(fresh_sandbox) for _ in range(per_round)]
        pool.wait_ready(docker_pool.adaptive_size(), timeout=120)
        flush_removals()
        theirs.append(clock(docker_run))
    docker_pool.drain_all()
    docker_pool.set_pool_size(0)
    flush_removals()
    return row(
        f"fresh container from warm pool, bursts of {per_round} back to back: each vs docker run",
        statistics.median(ours),
        statistics.median(theirs),
        0.15,
    )


def bench_round_trip(n: int, rounds: int, config: OSSandboxConfig = CONTAINER) -> dict[str, Any]:
    """Warm-session ``execute(f, 1)`` in ``config`` against the same on BASIC."""
    docker_pool.set_pool_size(0)
    with OSSandbox(config) as ctr, OSSandbox(BASIC) as basic:
        ctr.execute(f, 1)
        basic.execute(f, 1)
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(clock(lambda: [ctr.execute(f, 1) for _ in range(n)]) / n)
            theirs.append(clock(lambda: [basic.execute(f, 1) for _ in range(n)]) / n)
    flush_removals()
    gvisor = config.isolation_type is IsolationType.GVISOR
    return row(
        f"warm-session execute(f,1) round trip: {'gvisor' if gvisor else 'container'} vs basic",
        statistics.median(ours),
        statistics.median(theirs),
        None if gvisor else 1.2,
    )


def bench_gvisor(rounds: int, n: int) -> list[dict[str, Any]]:
    """The GVISOR rows (cold start and round trip); none, with the reason, without runsc."""
    ok, reason = GVisorBackend.available()
    if not ok:
        print(f"gvisor rows skipped: {reason}")
        return []
    print(f"gvisor platform: {runsc_platform()}")
    return [*bench_cold(rounds, GVISOR, RUNSC), bench_round_trip(n, max(3, rounds // 3), GVISOR)]


def print_table(results: list[dict[str, Any]]) -> None:
    """The README's table format: ours, theirs, ratio, target."""
    width = max(66, *(len(r["name"]) for r in results))
    print(f"{'benchmark':<{width}} {'ours':>10} {'theirs':>10} {'ratio':>7} {'target':>7}")
    for r in results:
        unit = r.get("unit", "ms")
        target = r["target"]
        verdict = "" if target is None else ("ok" if r["ratio"] <= target else "MISS")
        shown = "" if target is None else f"<={target}"
        print(
            f"{r['name']:<{width}} {r['ours_ms']:>7.1f} {unit:<2} {r['theirs_ms']:>7.1f} {unit:<2} "
            f"{r['ratio']:>7.3f} {shown:>7} {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke run)")
    args = parser.parse_args()
    ok, reason = ContainerBackend.available()
    if not ok:
        raise SystemExit(f"container backend unavailable: {reason}")
    rounds, n = (5, 100) if args.quick else (15, 300)
    results = [*bench_cold(rounds), bench_pool(rounds), bench_pool_back_to_back(max(3, rounds // 2), 6)]
    results.append(bench_round_trip(n, max(3, rounds // 3)))
    results += bench_gvisor(rounds, n)
    print_table(results)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
