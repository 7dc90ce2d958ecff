"""Outside review (10th): a display's ``transient`` part is outside the cell's output budget, and the host keeps it.

Attack: a STRICT cell calls ``display({"text/plain": "x"}, raw=True,
display_id=big + str(i))`` 24 times with a 40 MB ``big`` (the worker holds it
once; each frame copies it only while it is sent). ``output_budget.frame_size``
charges a display frame for its ``data``, ``metadata``, ``evalue`` and
``traceback`` only (256 bytes here); the ``transient`` dict is free. Yet
``outputs.OutputCollector._record`` keeps ``transient["display_id"]`` of every
``display_data`` as the output's ``_display_id`` for the whole cell, the kernel's
``IOPubRelay`` publishes the whole ``transient`` dict to the frontend and keeps
the id in its ``_displays`` set, and ``kernel/displays.DisplayScopes`` keeps up
to 4096 of them (twice: the id and its scoped copy) across cells.

Measured from the host (load 8-10): the host process's peak RSS grew by
about 1 GiB during one cell (27 -> 1076 MiB with 20 ids of 50 MB at
MODERATE); the cell ended ``ok``, its record counts no dropped output, the
budget (an eighth of the memory limit, 32 MiB at STRICT) never tripped. The
README promises "A cell's output beyond a budget (an eighth of the memory
limit, 8-128 MiB ...) is cut with a notice and counted in its record".
Severity: medium (host memory exhaustion, a DoS of the kernel/host from a
STRICT cell; the same bytes reach the browser unbounded through the relay).

Judged from the host: the host's peak RSS growth over the cell stays within
a few times the cell's output budget (``4 * budget + 256 MiB``; the output
budget module says a kept byte is held up to ~4 times), or the cell's record
counts the dropped frames.

The same hole, second door: ``frame_size`` does not count an ``error``
frame's ``ename`` either, and ``_record`` keeps ``str(ename)`` of each. A cell
that sends its own frames through the worker's channel
(``sys.stdout.conn.send({"type": "error", "ename": big + str(i), ...})``, 24
times 40 MB) grew the host's peak RSS by 992 MiB at STRICT, status ``ok``,
nothing counted dropped. (``execute_result``'s ``execution_count``, an int of
any size, is kept uncounted the same way.)

Fix (suggested): ``output_budget.frame_size`` counts the whole frame
(``transient`` included); ``content_for`` rebuilds ``transient`` as
``{"display_id": str}`` only, and a display id longer than a small bound
(e.g. 256 characters, like ``MAX_COMM_ID``) is refused or replaced.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(600)]

IDS, SIZE = 24, 40_000_000

#: per door, the line of the cell's loop that sends one big uncounted field
SENDS = {
    "display_id": "    display({'text/plain': 'x'}, raw=True, display_id=big + str(i))\n",
    "ename": "    sys.stdout.conn.send({'type': 'error', 'ename': big + str(i), 'evalue': '', 'traceback': []})\n",
}

HOST = r"""
import json, resource, sys
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.output_budget import OutputBudget

ids, size, send = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
code = (
    "import sys\nfrom IPython.display import display\n"
    f"big = 'A' * {size}\n"
    f"for i in range({ids}):\n" + send + "print('sent')\n"
)
cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
with OSSandbox(cfg) as sb:
    sb.run_cell("1")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = sb.run_cell(code)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    extra = result.audit_record.get("extra", {})
    print(json.dumps({
        "status": result.status,
        "grew": after - before,
        "budget": OutputBudget.for_memory_limit(cfg.limits.memory_limit_bytes).limit,
        "dropped": {k: v for k, v in extra.items() if "drop" in k},
        "outputs": len(result.outputs),
    }))
"""


@pytest.mark.parametrize("door", sorted(SENDS))
def test_uncounted_output_fields_stay_within_the_output_budget(door: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HOST, str(IDS), str(SIZE), SENDS[door]], capture_output=True, text=True, timeout=540
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["status"] == "ok", got
    bound = 4 * got["budget"] + (256 << 20)
    assert got["grew"] <= bound or any(got["dropped"].values()), (
        f"one STRICT cell grew the host's peak RSS by {got['grew'] >> 20} MiB through {door} fields "
        f"(output budget {got['budget'] >> 20} MiB, bound {bound >> 20} MiB), and its record counts no "
        f"dropped output: {got}"
    )
