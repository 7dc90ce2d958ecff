"""Outside review: a cell's output flood costs the host ~4x its size, unbounded by any limit.

Attack: a STRICT sandbox (256 MiB resident limit) writes one 1 MiB string to
stdout again and again. The sandbox never holds more than a few MiB, but the
host keeps every byte of the cell's output (``outputs.OutputCollector``, the
relay's coalescing buffer, the joined text for the record's hash) with no
cap. Measured here: 600 MiB printed grew the host process's peak RSS by
~2400 MiB; 6 GiB printed would take this 24 GiB machine down, from a
sandbox limited to 256 MiB. The kernel (``kernel/relay.py``) and the magic
share the collector.

Judged from the host: a separate host process runs the cell through the
library and reports how much its own peak RSS grew; it must stay below the
sandbox's memory limit (what the host keeps of a cell's output is bounded;
the rest is dropped with a kernel notice, and the record says it was cut).

Fix (suggested): a per-cell output budget in ``outputs.py`` (and the
relay's pending buffer in ``kernel/relay.py``): past it, stop keeping
stream text, count the dropped bytes, emit one kernel-made notice, and hash
what was kept plus the count into the record (``notebook/evidence.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.timeout(300), pytest.mark.skipif(not OK, reason=f"namespace: {WHY}")]

PRINTED_MIB = 400

_HOST = """
import json, resource
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
with OSSandbox(cfg) as sb:
    sb.run_cell("1")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sb.run_cell("import sys\\ns = 'x' * (1 << 20)\\nfor _ in range(%d):\\n    sys.stdout.write(s)\\n")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mib": (after - before) // 1024, "limit_mib": cfg.limits.memory_limit_bytes >> 20}))
"""


def test_output_flood_does_not_grow_the_host_past_the_sandbox_limit() -> None:
    res = subprocess.run(
        [sys.executable, "-c", _HOST % PRINTED_MIB], capture_output=True, text=True, timeout=280, cwd="/"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["growth_mib"] < got["limit_mib"], (
        f"{PRINTED_MIB} MiB printed by a sandbox limited to {got['limit_mib']} MiB grew the host by "
        f"{got['growth_mib']} MiB"
    )
