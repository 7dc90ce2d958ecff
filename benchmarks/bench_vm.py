"""VM backend benchmarks (issue 15), each side by side with its comparison, in one run.

1. Fresh VM sandbox, cold (no pool): ``OSSandbox(...).execute(f, 1)`` plus
   ``close()`` against the same on the CONTAINER backend (cold, no pool) and
   against ``docker run --rm --network none IMAGE python3 -c pass``.
2. Fresh VM sandbox from the pre-booted pool (a paused guest resumed with
   ``cont``; the pool refills between rounds, not timed) against the same
   ``docker run``. Target here under TCG: <= 0.3 s.
3. Warm-session round trip ``execute(f, 1)``: VM against BASIC. Target <= 3x.
   With it, QEMU's CPU time per call (from outside: less swayed by the
   machine's load than the wall-clock ratio).
4. QEMU memory per sandbox: the host's view of QEMU (RSS and, with a host
   cgroup, the cgroup's charge) for an idle guest, reported with the
   guest RAM and the acceleration used (KVM or TCG, and why).

CPU is scarce here: rounds are few and every QEMU is killed on the way out.
The container rows are skipped, with the reason, without Docker.
Prints a table and, with ``--json``, JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig
from glsandbox_kernel.backends.vm import POOLS, VMBackend, detect_accel
from glsandbox_kernel.backends.vm import accel as vm_accel
from glsandbox_kernel.config import create_config_by_level

VM = create_config_by_level("strict", isolation_type=IsolationType.VM)
CONTAINER = create_config_by_level("strict", isolation_type=IsolationType.CONTAINER)
BASIC = create_config_by_level("strict", isolation_type=IsolationType.BASIC)


def f(x: int) -> int:
    return x


def clock(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def fresh(config: OSSandboxConfig) -> None:
    with OSSandbox(config) as box:
        box.execute(f, 1)


def row(
    name: str,
    ours: float,
    theirs: float | None,
    target: float | None,
    unit: str = "ms",
    *,
    abs_target: float | None = None,
) -> dict[str, Any]:
    """One table row; ``target`` bounds the ratio, ``abs_target`` (seconds) the figure itself."""
    scale = 1e3 if unit == "ms" else 1.0
    return {
        "name": name,
        "ours_ms": ours * scale,
        "theirs_ms": None if theirs is None else theirs * scale,
        "ratio": None if not theirs else ours / theirs,
        "target": target,
        "abs_target_ms": None if abs_target is None else abs_target * 1e3,
        "unit": unit,
    }


def docker_ok() -> tuple[bool, str]:
    from glsandbox_kernel.backends.container import ContainerBackend

    return ContainerBackend.available()


def docker_run() -> None:
    from glsandbox_kernel.backends.container import default_image

    subprocess.run(
        ["docker", "run", "--rm", "--network", "none", default_image(), "python3", "-c", "pass"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def bench_cold(rounds: int, with_docker: bool) -> list[dict[str, Any]]:
    """Fresh VM (no pool) against a fresh container (no pool) and docker run."""
    POOLS.set_size(0)
    vm, ctr, drun = [], [], []
    if with_docker:
        from glsandbox_kernel.backends.container import warm as docker_pool

        docker_pool.set_pool_size(0)
        fresh(CONTAINER)  # daemon connection and image check, once per process
        docker_run()
    for _ in range(rounds):
        vm.append(clock(lambda: fresh(VM)))
        if with_docker:
            ctr.append(clock(lambda: fresh(CONTAINER)))
            drun.append(clock(docker_run))
    v = statistics.median(vm)
    rows = [row("fresh VM, cold: execute(f,1)+close (boot to hello included)", v, None, None)]
    if with_docker:
        rows.append(row("  vs fresh container, cold (same call)", v, statistics.median(ctr), None))
        rows.append(row("  vs docker run --rm --network none python3 -c pass", v, statistics.median(drun), None))
    return rows


def bench_pool(rounds: int, with_docker: bool) -> list[dict[str, Any]]:
    """A paused pre-booted guest resumed, against docker run (refills not timed)."""
    POOLS.set_size(1)
    backend = VMBackend(VM)
    pool = POOLS.get(backend.pool_key(), backend._launch_pooled)
    ours, drun = [], []
    try:
        for _ in range(rounds):
            pool.refill()
            if not pool.wait_ready(1, timeout=240):
                raise SystemExit(f"the VM pool did not fill: {pool.last_error}")
            ours.append(clock(lambda: fresh(VM)))
            POOLS.settle(240)
            if with_docker:
                drun.append(clock(docker_run))
    finally:
        POOLS.set_size(0)
    o = statistics.median(ours)
    theirs = statistics.median(drun) if drun else None
    name = "fresh VM from the pre-booted pool (cont): execute(f,1)+close vs docker run (target <= 300 ms)"
    return [row(name, o, theirs, None, abs_target=0.3)]


def bench_round_trip(n: int, rounds: int) -> list[dict[str, Any]]:
    """Warm-session execute(f, 1): VM against BASIC, alternating rounds; the spread of the
    per-round ratios; and the transport alone (a raw ping frame, no session, no call)."""
    POOLS.set_size(0)
    with OSSandbox(VM) as vm, OSSandbox(BASIC) as basic:
        vm.execute(f, 1)
        basic.execute(f, 1)
        ours, theirs, ping_ours, ping_theirs, qemu_cpu = [], [], [], [], []
        vcpu_call, vcpu_ping, io_call, io_ping = [], [], [], []
        worker = vm.session.worker
        assert worker is not None
        for _ in range(rounds):
            cpu0 = worker.sample().cpu_time or 0.0
            t0 = qemu_threads(worker.pid)
            ours.append(clock(lambda: [vm.execute(f, 1) for _ in range(n)]) / n)
            t1 = qemu_threads(worker.pid)
            qemu_cpu.append(((worker.sample().cpu_time or 0.0) - cpu0) / n)
            theirs.append(clock(lambda: [basic.execute(f, 1) for _ in range(n)]) / n)
            t2 = qemu_threads(worker.pid)
            ping_ours.append(raw_ping(vm, n))
            t3 = qemu_threads(worker.pid)
            ping_theirs.append(raw_ping(basic, n))
            vcpu_call.append((t1[0] - t0[0]) / n)
            io_call.append((t1[1] - t0[1]) / n)
            vcpu_ping.append((t3[0] - t2[0]) / n)
            io_ping.append((t3[1] - t2[1]) / n)
    trip = row(
        "warm-session execute(f,1) round trip: vm vs basic", statistics.median(ours), statistics.median(theirs), 3.0
    )
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    trip["spread"] = [min(ratios), max(ratios)]
    ping = row("  transport only: a raw ping frame, vm vs basic", statistics.median(ping_ours), None, None)
    ping.update(theirs_ms=statistics.median(ping_theirs) * 1e3)
    ping["ratio"] = ping["ours_ms"] / ping["theirs_ms"]
    # QEMU's CPU time per warm call, from outside (the host cgroup or /proc): the emulated guest's share
    cpu = row("  QEMU CPU time per warm call (host view)", statistics.median(qemu_cpu), None, None)
    # The same split by QEMU's threads: its vCPU (the emulated guest) and the rest (main loop, I/O)
    split = [
        row("    of it QEMU's vCPU thread, per warm call", statistics.median(vcpu_call), None, None),
        row(
            "    of it QEMU's other threads (main loop: chardev I/O), per warm call",
            statistics.median(io_call),
            None,
            None,
        ),
        row(
            "  QEMU's vCPU thread per raw ping (transport and the guest's frame I/O)",
            statistics.median(vcpu_ping),
            None,
            None,
        ),
        row("  QEMU's other threads per raw ping", statistics.median(io_ping), None, None),
    ]
    return [trip, ping, cpu, *split]


def qemu_threads(pid: int) -> tuple[float, float]:
    """CPU seconds of QEMU's vCPU threads (named ``CPU n/TCG`` or ``/KVM``) and of its other threads."""
    tick = os.sysconf("SC_CLK_TCK")
    vcpu = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                stat = fh.read()
        except OSError:  # the thread ended
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        if name.startswith("CPU "):
            vcpu += cpu
        else:
            other += cpu
    return vcpu, other


def raw_ping(box: OSSandbox, n: int) -> float:
    """Seconds per ping/pong frame pair on the session's channel (between calls: nothing else reads it)."""
    chan = box.session.chan
    assert chan is not None
    t0 = time.perf_counter()
    for _ in range(n):
        chan.send({"type": "ping", "id": 0})
        chan.recv()
    return (time.perf_counter() - t0) / n


def bench_memory() -> list[dict[str, Any]]:
    """QEMU's memory for one idle STRICT guest, from the host (RSS and the cgroup's charge)."""
    POOLS.set_size(0)
    with OSSandbox(VM) as box:
        box.execute(f, 1)
        worker = box.session.worker
        assert worker is not None
        [pid] = worker.host_pids()
        with open(f"/proc/{pid}/status") as fh:
            rss = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))
        sample = worker.sample()
        ram = worker.describe()["vm"]["guest_ram_bytes"]
    mib = 1024 * 1024
    rows = [row(f"QEMU RSS per idle sandbox (guest RAM {ram // mib} MiB)", rss / mib, None, None, unit="MiB")]
    if sample.memory_current is not None and sample.source.startswith("cgroup"):
        rows.append(
            row(f"  QEMU's host cgroup charge ({sample.source})", sample.memory_current / mib, None, None, "MiB")
        )
    return rows


def print_table(results: list[dict[str, Any]], accel: vm_accel.Accel) -> None:
    print(f"acceleration: {accel.name} ({accel.reason}); host cores: {os.cpu_count()}; load: {os.getloadavg()[0]:.1f}")
    width = max(66, *(len(r["name"]) for r in results))
    print(f"{'benchmark':<{width}} {'ours':>12} {'theirs':>12} {'ratio':>7} {'target':>9}")
    for r in results:
        unit = r["unit"]
        theirs = "" if r["theirs_ms"] is None else f"{r['theirs_ms']:>9.1f} {unit:<3}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        if "spread" in r:
            ratio += " ({:.1f}-{:.1f})".format(*r["spread"])
        target, absolute = r["target"], r["abs_target_ms"]
        verdict, shown = "", ""
        if target is not None and r["ratio"] is not None:
            verdict, shown = ("ok" if r["ratio"] <= target else "MISS"), f"<={target}x"
        elif absolute is not None:
            verdict, shown = ("ok" if r["ours_ms"] <= absolute else "MISS"), f"<={absolute:.0f}ms"
        print(f"{r['name']:<{width}} {r['ours_ms']:>8.1f} {unit:<3} {theirs:>12} {ratio:>7} {shown:>9} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewest rounds (CI smoke run)")
    parser.add_argument(
        "--rows", default="cold,pool,trip,memory", help="which rows to run (comma-separated; default: all)"
    )
    args = parser.parse_args()
    ok, reason = VMBackend.available()
    if not ok:
        raise SystemExit(f"VM backend unavailable: {reason}")
    with_docker, why = docker_ok()
    if not with_docker:
        print(f"container and docker run rows skipped: {why}", file=sys.stderr)
    rounds, n = (2, 50) if args.quick else (5, 200)
    benches: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "cold": lambda: bench_cold(rounds, with_docker),
        "pool": lambda: bench_pool(rounds + 1, with_docker),
        "trip": lambda: bench_round_trip(n, 3),
        "memory": bench_memory,
    }
    wanted = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = set(wanted) - set(benches)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}; choose from {sorted(benches)}")
    try:
        results = [r for name in wanted for r in benches[name]()]
    finally:
        POOLS.drain_all()
    accel = detect_accel()
    print_table(results, accel)
    if args.json:
        print(json.dumps({"accel": accel.name, "accel_reason": accel.reason, "results": results}, indent=2))


if __name__ == "__main__":
    main()
