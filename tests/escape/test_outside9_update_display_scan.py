"""Outside review (10th): each ``update_display_data`` scans every output of the cell on the host (quadratic).

Attack: a MODERATE cell sends (through ``sys.stdout.conn.send``) N small
``display_data`` frames, each with its own display id, then N
``update_display_data`` frames for an id none of them has. Every frame is
tiny (a few hundred bytes of the output budget; nothing is dropped), but
``outputs.OutputCollector._record`` looks for the updated display with a
linear walk over all the cell's outputs (``for out in self._outputs``),
under the collector's lock on the session thread: N * N comparisons of host
CPU, which no sandbox limit counts (the CPU limit is the sandbox's).

Measured (load 9-11): N = 5 000: 3.8 s of host CPU for 0.14 s of sandbox CPU;
N = 20 000: 30 s of host CPU, and the cell ran into its 60 s timeout while
the host was busy with its frames. Severity: low (host CPU amplification,
bounded by the call's timeout: up to 300 s a cell at LENIENT).

Judged from the host: the host CPU spent on the cell stays within a fixed
allowance plus a small multiple of what the sandbox itself spent (here
``5 s + 10 x`` the sandbox's CPU, for N = 12 000: expected about 20 s now).
This compares CPU times, not wall time, with a wide margin.

Fix (suggested): ``OutputCollector``: index the kept displays by display id
(a dict of id -> outputs) instead of scanning the list.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(300)]

N = 12_000

HOST = r"""
import json, resource, sys
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
n = int(sys.argv[1])
code = (
    "import sys\nsend = sys.stdout.conn.send\n"
    f"for i in range({n}):\n"
    "    send({'type': 'display_data', 'data': {'text/plain': 'x'}, 'metadata': {}, "
    "'transient': {'display_id': 'd%d' % i}})\n"
    f"for i in range({n}):\n"
    "    send({'type': 'update_display_data', 'data': {'text/plain': 'y'}, 'metadata': {}, "
    "'transient': {'display_id': 'none'}})\n"
    "print('sent')\n"
)
cfg = create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE)
with OSSandbox(cfg) as sb:
    sb.run_cell("1")
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = sb.run_cell(code)
    after = resource.getrusage(resource.RUSAGE_SELF)
    host = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(json.dumps({"status": result.status, "host_cpu": host, "sandbox_cpu": result.metrics.cpu_time_used}))
"""


def test_display_updates_cost_the_host_linear_time() -> None:
    proc = subprocess.run([sys.executable, "-c", HOST, str(N)], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    sandbox = got["sandbox_cpu"] or 0.0
    allowance = 5.0 + 10 * sandbox
    assert got["host_cpu"] <= allowance, (
        f"{N} displays and {N} updates cost the host {got['host_cpu']:.1f} s of CPU "
        f"(the sandbox spent {sandbox:.2f} s; allowance {allowance:.1f} s): {got}"
    )
