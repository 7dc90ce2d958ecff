"""``python -m glsandbox_kernel.distributed doctor ADDRESS``: ``glsandbox doctor`` on every worker (client side).

Connects to the scheduler, runs the doctor through the plugin on each worker
(``client.run``) and prints one block per worker: backends, default backend,
the plugin's sessions. ``--json`` prints the raw reports. Exit status 0, or 2
when the scheduler cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glsandbox_kernel.distributed")
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="glsandbox doctor on every worker of a Dask cluster")
    doctor.add_argument("address", metavar="SCHEDULER_ADDRESS", help="e.g. tcp://10.0.0.5:8786")
    doctor.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        from distributed import Client
    except ImportError:  # the README's command on a machine with glsandbox-kernel[all] only: one line, exit 2
        print(f"{parser.prog}: error: needs Dask: pip install 'glsandbox-kernel[distributed]'", file=sys.stderr)
        return 2

    from .client import cluster_doctor

    try:
        client = Client(args.address, timeout=30)
    except Exception as exc:  # noqa: BLE001 - one line, exit 2
        print(f"cannot reach {args.address}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    with client:
        reports = cluster_doctor(client)
    if args.json:
        print(json.dumps(reports, indent=2, sort_keys=True))
        return 0
    for address, report in sorted(reports.items()):
        doc = report.get("doctor") or {}
        print(f"{address} (pid {report.get('pid')}, plugin {'yes' if report.get('plugin') else 'no'})")
        if "error" in doc:
            print(f"  doctor failed: {doc['error']}")
            continue
        for name, info in sorted((doc.get("backends") or {}).items()):
            print(f"  {'yes' if info.get('available') else 'no '}  {name:<10} {info.get('reason', '')}")
        print(f"  default backend: {doc.get('default_backend')}")
        for s in report.get("sessions") or []:
            print(
                f"  session {s['session_id'][:8]} {s['state']} {s['isolation_type']}/{s['security_level']} calls {s['calls']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
