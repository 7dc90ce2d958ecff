"""Memory of idle sessions (issue 14): 20 idle glsandbox sessions vs 20 multiprocessing workers.

What is counted: the proportional set size (``Pss`` of ``/proc/PID/smaps_rollup``:
shared pages split among the processes that map them) of everything each side
started, plus what the host process itself grew by:

- glsandbox: 20 ``OSSandbox`` sessions (default config of the backend, one
  call each, then idle), the zygote template, every process below it (set-up
  processes, workers, network relays, idle warm-pool workers) and the host's
  own PSS growth (session objects, supervisor/monitor threads);
- peer: ``multiprocessing.Pool(20)`` (the interpreter's default start method,
  fork here), one task per worker, then idle: the 20 workers and the host's
  PSS change (negative when forking makes the host's pages shared).

Each side runs in a fresh interpreter (``--side``) that imports the same
modules first, so both start from the same host. Sides alternate for
``--rounds`` rounds; the figure is the median, the spread is min-max.
Target: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench_engine import _pss as pss  # Pss of smaps_rollup, in bytes (0 when gone)

SESSIONS = 20


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def private_dirty(pid: int) -> int:
    """``Private_Dirty`` of ``pid`` in bytes: the pages no other process maps (0 when gone).

    Reported beside the PSS (not counted): what each process wrote since its fork."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            fields = dict(line.split(":", 1) for line in fh if line.endswith("kB\n"))
    except OSError:
        return 0
    return int(fields.get("Private_Dirty", "0 kB").split()[0]) * 1024


def mappings(pid: int) -> dict[str, int]:
    """PSS of ``pid`` by kind of mapping, in bytes: [heap], anonymous (pymalloc arenas, thread
    stacks), [stack], libpython's pages and every other file; {} when gone.

    Reported beside the totals (not counted again): where one idle worker's pages are."""
    kinds: dict[str, int] = {}
    kind = "anon"
    try:
        with open(f"/proc/{pid}/smaps") as fh:
            for line in fh:
                head, _, rest = line.partition(" ")
                if "-" in head and not head.endswith(":"):  # a mapping's first line
                    name = rest.split()[4] if len(rest.split()) > 4 else ""
                    if name.startswith("[") or not name:
                        kind = name or "anon"
                    else:
                        kind = "libpython" if "libpython" in name else "files"
                elif head == "Pss:":
                    kinds[kind] = kinds.get(kind, 0) + int(rest.split()[0]) * 1024
    except OSError:
        return {}
    return kinds


def f(x: int) -> int:
    return x


def _settle() -> None:
    time.sleep(1.0)  # background fills, threads and page-ins finish


def side_ours(n: int, isolation: str | None) -> dict[str, Any]:
    """Run in a fresh interpreter: n idle sessions; PSS of everything glsandbox started."""
    from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig, zygote
    from glsandbox_kernel.backends.zygote_backend import POOLS
    from glsandbox_kernel.procfs import descendants

    host_before = pss(os.getpid())
    threads_before = threads(os.getpid())
    iso = IsolationType(isolation) if isolation else None
    boxes = [OSSandbox(OSSandboxConfig(isolation_type=iso)) for _ in range(n)]
    try:
        for box in boxes:
            box.execute(f, 1)
        # Idle: the warm pool's burst (sessions started back to back) is over and trimmed.
        time.sleep(POOLS.policy.burst_idle + 0.5)
        POOLS.settle()
        _settle()
        template = zygote.get_zygote(sys.executable).proc.pid
        tree = [template, *descendants(template)]
        pooled = POOLS.pooled_pids()
        roles: dict[str, int] = {}
        private: dict[str, int] = {}
        for pid in tree:
            role = "template" if pid == template else ("pool" if pid in pooled else "session")
            roles[role] = roles.get(role, 0) + pss(pid)
            private[role] = private.get(role, 0) + private_dirty(pid)
        host = pss(os.getpid()) - host_before
        workers = [p for p in tree if p != template and p not in pooled and pss(p) > 2**20]
        out = {
            "worker_mappings": mappings(workers[-1]) if workers else {},
            "total": sum(roles.values()) + host,
            "host_delta": host,
            "processes": len(tree),
            "host_threads_added": threads(os.getpid()) - threads_before,
            "backend": boxes[0].isolation_type,
            **{f"pss_{k}": v for k, v in roles.items()},
            **{f"private_{k}": v for k, v in private.items()},
        }
    finally:
        for box in boxes:
            box.close()
    return out


def side_peer(n: int) -> dict[str, Any]:
    """Run in a fresh interpreter: a Pool of n workers, one task each, idle; their PSS."""
    import multiprocessing

    import glsandbox_kernel  # noqa: F401 - the same host as the other side

    host_before = pss(os.getpid())
    threads_before = threads(os.getpid())
    with multiprocessing.Pool(n) as pool:
        pool.map(f, range(n), chunksize=1)
        _settle()
        kids = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
        host = pss(os.getpid()) - host_before
        workers = sum(pss(p) for p in kids)
        out = {
            "private_workers": sum(private_dirty(p) for p in kids),
            "total": workers + host,
            "host_delta": host,
            "processes": len(kids),
            "host_threads_added": threads(os.getpid()) - threads_before,
            "start_method": multiprocessing.get_start_method(),
        }
    return out


def run_side(side: str, n: int, isolation: str | None) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--sessions", str(n)]
    if isolation:
        cmd += ["--isolation", isolation]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=SESSIONS)
    parser.add_argument("--isolation", default=None, help="backend (default: the default backend)")
    parser.add_argument("--side", choices=("ours", "peer"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "ours":
        print(json.dumps(side_ours(args.sessions, args.isolation)))
        return
    if args.side == "peer":
        print(json.dumps(side_peer(args.sessions)))
        return
    ours, peer = [], []
    for _ in range(args.rounds):
        ours.append(run_side("ours", args.sessions, args.isolation))
        peer.append(run_side("peer", args.sessions, None))
    a = statistics.median(r["total"] for r in ours)
    b = statistics.median(r["total"] for r in peer)
    ratios = [o["total"] / p["total"] for o, p in zip(ours, peer, strict=True)]
    mib = 2**20
    result = {
        "name": f"{args.sessions} idle sessions [{ours[0]['backend']}], PSS of all started vs {args.sessions} "
        f"multiprocessing workers [{peer[0]['start_method']}]",
        "ours_mib": a / mib,
        "theirs_mib": b / mib,
        "ratio": a / b,
        "ratio_spread": [min(ratios), max(ratios)],
        "target": 1.5,
        "ours_per_session_mib": a / args.sessions / mib,
        "theirs_per_worker_mib": b / args.sessions / mib,
        "ours_rounds": ours,
        "peer_rounds": peer,
    }
    ok = "ok" if result["ratio"] <= 1.5 else "MISS"
    print(
        f"{result['name']}: {a / mib:.1f} MiB vs {b / mib:.1f} MiB, ratio {result['ratio']:.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}) <= 1.5 {ok}"
    )
    last = ours[-1]
    parts = ", ".join(f"{k[4:]} {v / mib:.1f}" for k, v in last.items() if k.startswith("pss_"))
    priv = ", ".join(f"{k[8:]} {v / mib:.1f}" for k, v in last.items() if k.startswith("private_"))
    print(
        f"  ours: {last['processes']} processes ({parts}; host +{last['host_delta'] / mib:.1f} MiB, "
        f"+{last['host_threads_added']} threads); peer: {peer[-1]['processes']} workers, host "
        f"{peer[-1]['host_delta'] / mib:+.1f} MiB, +{peer[-1]['host_threads_added']} threads"
    )
    print(
        f"  private (Private_Dirty, not counted, MiB): ours {priv}; "
        f"peer workers {peer[-1]['private_workers'] / mib:.1f}"
    )
    kinds = ", ".join(f"{k} {v / mib:.2f}" for k, v in sorted(last["worker_mappings"].items()) if v)
    print(f"  one idle worker's PSS by mapping (MiB): {kinds}")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
