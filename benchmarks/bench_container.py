"""Container backend benchmarks (issue 6), each side by side with its comparison.

1. Fresh container sandbox, cold (no warm pool): ``OSSandbox(...).execute(f, 1)``
   plus ``close()`` against ``docker run --rm --network none IMAGE python3 -c pass``.
   Both start a container of the same image and a python in it and wait for
   an answer: ours the result of ``f(1)`` (after the worker's imports and the
   call's round trip), docker run the exit status (and, with ``--rm``, the
   removal). Our container's exit and removal run in a background reaper
   after close; the figure "incl. removal" also waits for them (reported,
   no target). The floor row is what any sandbox that starts a container
   and a python per call cannot go below: the Docker API's create, start and
   wait of ``python3 -c pass`` in the same image (no worker, no CLI; its
   removal off the clock), against the same ``docker run``; and, as our
   close does not wait for the container's exit either (under runsc the
   sentry's teardown), the same create and start until a ``python3 -c``
   that only connects to a bound socket is accepted.
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
   runsc has it, else ptrace; see scripts/dockerd-up), and every platform
   this runsc offers is timed side by side with ptrace (``runsc do python3
   -c pass``, as root, no Docker); one that starts no sandbox within 10 s
   (kvm without usable hardware virtualisation) is reported, not timed.

Rounds alternate between the two sides so machine noise hits both alike; the
figure is the median over rounds. Prints a table and, with ``--json``, JSON.
Needs a running Docker daemon and the image (scripts/dockerd-up,
scripts/build-test-image).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig
from glsandbox_kernel.backends.container import ContainerBackend, default_image, docker_api, flush_removals
from glsandbox_kernel.backends.container import warm as docker_pool
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


def api_run(runtime: str | None = None) -> None:
    """The floor: the Docker API's create, start and wait of ``python3 -c pass`` (no worker, no CLI), then removal off the clock."""
    api = docker_api.api()
    host = api.create_host_config(network_mode="none", **({"runtime": runtime} if runtime else {}))
    cid = api.create_container(default_image(), ["python3", "-c", "pass"], network_disabled=True, host_config=host)[
        "Id"
    ]
    try:
        api.start(cid)
        api.wait(cid)
    finally:
        _floor_ids.append(cid)


_floor_ids: list[str] = []

#: The connect floor's python: one connect to the host's socket, as the worker's first sign of life.
_CONNECT = "import socket; socket.socket(socket.AF_UNIX).connect('/run/floor/s')"


def api_connect(runtime: str | None = None) -> None:
    """Floor without the exit: API create+start of ``python3 -c`` that connects to a bound socket, until accepted.

    ``api_run``'s wait includes the container's exit (under runsc the
    sentry's teardown, 100-400 ms here), which a sandbox's close does not
    wait for; this one stops where ours hears from its worker.
    """
    api = docker_api.api()
    outer = tempfile.mkdtemp()
    try:
        sock_dir = os.path.join(outer, "d")
        os.mkdir(sock_dir)
        os.chmod(sock_dir, 0o777)
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(os.path.join(sock_dir, "s"))
        os.chmod(os.path.join(sock_dir, "s"), 0o666)
        listener.listen(1)
        host = api.create_host_config(
            network_mode="none",
            binds={sock_dir: {"bind": "/run/floor", "mode": "ro"}},
            **({"runtime": runtime} if runtime else {}),
        )
        cid = api.create_container(
            default_image(), ["python3", "-c", _CONNECT], network_disabled=True, user="65534:65534", host_config=host
        )["Id"]
        _floor_ids.append(cid)
        api.start(cid)
        listener.settimeout(60)
        listener.accept()[0].close()
        listener.close()
    finally:
        shutil.rmtree(outer, ignore_errors=True)


def remove_floor_containers() -> None:
    api = docker_api.api()
    while _floor_ids:
        api.remove_container(_floor_ids.pop(), force=True)


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
    api_connect(runtime)
    remove_floor_containers()
    ours, with_removal, theirs, floor, connect_floor = [], [], [], [], []
    for _ in range(rounds):
        t = clock(lambda: fresh_sandbox(config))
        ours.append(t)
        with_removal.append(t + clock(flush_removals))
        theirs.append(clock(lambda: docker_run(runtime)))
        floor.append(clock(lambda: api_run(runtime)))
        remove_floor_containers()
        connect_floor.append(clock(lambda: api_connect(runtime)))
        remove_floor_containers()
    d = statistics.median(theirs)
    if runtime is None:
        name, target = "fresh container, cold: execute(f,1)+close vs docker run", 0.5
    else:
        name, target = f"fresh gvisor, cold: execute(f,1)+close vs docker run --runtime={runtime}", 0.8
    return [
        row(name, statistics.median(ours), d, target),
        row("  same, incl. waiting for background exit and removal", statistics.median(with_removal), d, None),
        row("  floor: API create+start+wait of python3 -c pass, no worker", statistics.median(floor), d, None),
        row(
            "  floor: API create+start until python3 -c connect is accepted (no exit)",
            statistics.median(connect_floor),
            d,
            None,
        ),
    ]


def bench_pool(rounds: int) -> dict[str, Any]:
    docker_pool.set_pool_size(2)
    backend = ContainerBackend(CONTAINER)
    pool = docker_pool.get_pool(backend.pool_key(), backend._launch_pooled)
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
    pool = docker_pool.get_pool(backend.pool_key(), backend._launch_pooled)
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


def runsc_platforms() -> list[str]:
    """The platforms this runsc binary offers, from its ``-platform`` flag's help ("ptrace (default), kvm")."""
    try:
        out = subprocess.run(["runsc", "flags"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    text = out.stdout + out.stderr
    match = re.search(r"-platform string\s+specifies which platform to use: ([^.\n]*)", text)
    return re.findall(r"([a-z][a-z0-9_]*)", re.sub(r"\(default\)", "", match.group(1))) if match else []


def runsc_do(platform: str, timeout: float) -> float | None:
    """Seconds for ``runsc --platform=P --network=none do python3 -c pass`` (no Docker); None if it failed."""
    argv = ["runsc", f"--platform={platform}", "--network=none", "do", sys.executable, "-S", "-c", "pass"]
    # runsc do leaves its bundle folder (runsc-do*) in $TMPDIR: give it one of ours, removed after.
    with tempfile.TemporaryDirectory(prefix="glsandbox-bench-runsc-") as tmp:
        env = {**os.environ, "TMPDIR": tmp}
        try:
            t0 = time.perf_counter()
            subprocess.run(
                argv, check=True, timeout=timeout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            return time.perf_counter() - t0
        except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return None


def bench_runsc_platforms(rounds: int, probe_timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every platform this runsc has, side by side (``runsc do``, as root), against ptrace.

    gVisor's fastest platform where it works: systrap (newer runsc), kvm
    (hardware virtualisation), ptrace (everywhere). A platform that does not
    finish one start within ``probe_timeout`` is reported and skipped.
    """
    platforms = runsc_platforms()
    print(f"runsc platforms: {', '.join(platforms) or 'unknown'}; registered with Docker: {runsc_platform()}")
    if "systrap" not in platforms:
        print("  systrap: not in this runsc (added to gVisor in 2023); not measured")
    if os.geteuid() != 0 or "ptrace" not in platforms:
        print("  platform rows skipped: `runsc do` needs root and the ptrace platform")
        return []
    usable = []
    for platform in platforms:
        if runsc_do(platform, probe_timeout) is None:
            print(f"  {platform}: no sandbox started within {probe_timeout:g} s; not usable here")
        else:
            usable.append(platform)
    times: dict[str, list[float]] = {p: [] for p in usable}
    for _ in range(rounds):
        for platform in usable:
            t = runsc_do(platform, 60.0)
            if t is not None:
                times[platform].append(t)
    base = statistics.median(times["ptrace"]) if times.get("ptrace") else None
    if base is not None:
        print(f"  ptrace: runsc do python3 -c pass {base * 1e3:.0f} ms")
    if len(times) < 2:
        print("  only ptrace starts a sandbox here: no other platform to compare")
    rows = []
    for platform, ts in times.items():
        if platform != "ptrace" and ts and base:
            rows.append(
                row(f"runsc do python3 -c pass: platform {platform} vs ptrace", statistics.median(ts), base, None)
            )
    return rows


def bench_gvisor(rounds: int, n: int, cold_only: bool = False) -> list[dict[str, Any]]:
    """The GVISOR rows (cold start and round trip; ``cold_only``: the cold rows); none, with the reason, without runsc."""
    ok, reason = GVisorBackend.available()
    if not ok:
        print(f"gvisor rows skipped: {reason}")
        return []
    print(f"gvisor platform: {runsc_platform()}")
    if cold_only:
        return bench_cold(rounds, GVISOR, RUNSC)
    return [
        *bench_cold(rounds, GVISOR, RUNSC),
        bench_round_trip(n, max(3, rounds // 3), GVISOR),
        *bench_runsc_platforms(max(3, rounds // 3)),
    ]


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
    parser.add_argument(
        "--rows",
        default="container,gvisor",
        help="which rows: container (runc cold, pool, round trip), gvisor (its cold rows, round trip, platforms), "
        "gvisor-cold (its cold rows alone); comma-separated, default container,gvisor",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the cold rows (default 15, --quick 5)")
    args = parser.parse_args()
    wanted = set(args.rows.split(","))
    ok, reason = ContainerBackend.available()
    if not ok:
        raise SystemExit(f"container backend unavailable: {reason}")
    rounds, n = (5, 100) if args.quick else (15, 300)
    rounds = args.rounds or rounds
    results: list[dict[str, Any]] = []
    if "container" in wanted:
        refilled, back_to_back = bench_pool(rounds), bench_pool_back_to_back(max(3, rounds // 2), 6)
        results += [*bench_cold(rounds), refilled, back_to_back]
        # The pool keeps up when sessions follow each other: back to back within 2x of refilled.
        results.append(row("  back to back vs refilled", back_to_back["ours_ms"] / 1e3, refilled["ours_ms"] / 1e3, 2.0))
        results.append(bench_round_trip(n, max(3, rounds // 3)))
    if "gvisor" in wanted:
        results += bench_gvisor(rounds, n)
    elif "gvisor-cold" in wanted:
        results += bench_gvisor(rounds, n, cold_only=True)
    print_table(results)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
