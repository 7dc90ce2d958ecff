"""Outside review 25b: ``\\b`` after ``\\r`` makes the host's stream-text processing quadratic (host CPU, GIL held).

Severity: medium (a STRICT cell costs the host kernel minutes to hours of CPU, with the GIL held, after the
cell's timeout; every later ``glsandbox audit verify``/``report`` of the notebook pays it again).

``notebook/evidence.process_stream_text`` (the cell's outputs hashed as a terminal shows them, JupyterLab's
rule) keeps the line in a Python list and, for each ``\\b``, does ``del out[pos - 1 : pos + 1]`` at the
cursor: a memmove of the rest of the line. The sandbox writes ``'A' * N + '\\r' + 'x\\b' * (N // 2)``: the
``\\r`` puts the cursor at the line's start, each ``x\\b`` deletes at the front, so the host moves the
whole line N/2 times. ``OSSandbox.run_cell`` computes the evidence (``outputs_evidence``) after the request
returned, outside the call's timeout; the text is far within the output budget (1.6 MB here; 32 MiB at
STRICT).

What the host saw (namespace, STRICT, measured): N = 400 000 (1.2 MB printed): 5.1 s of host CPU, N = 800 000:
22 s (the cell's wall time 32 s, past its 30 s timeout, status ``ok``), while the sandbox used 8 ms;
doubling N quadruples it (the same function alone: 0.11, 0.32, 1.3, 5.1 s for N = 50k..400k). The kernel's
thread holds the GIL meanwhile (``list`` deletion is one C call per ``\\b``).

Judged without a timed assertion, on the margin: with N = 3 200 000 (6.4 MB of text) the quadratic walk needs
about 6 minutes of host CPU, a linear one a few seconds; the host script must finish within 90 s (a
factor of four or more on either side).

Fix direction: process each line (``\\r``/``\\b`` never cross ``\\n``) with a cursor over a gap buffer or
build the line as segments (a ``\\b`` at the cursor removes from the segment in place), so the cost is
linear in the text; or cap the processed length and hash the rest raw, recorded as such.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(200)]

N = 3_200_000
BOUND = 90

HOST = r"""
import json, sys
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level

n = int(sys.argv[1])
code = f"import sys\nsys.stdout.write('A' * {n} + '\\r' + 'x\\b' * {n // 2})\nprint()\n"
with OSSandbox(create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)) as sandbox:
    result = sandbox.run_cell(code)
    print(json.dumps({"status": result.status, "hash": result.audit_record["extra"].get("outputs_hash")}))
"""


def test_stream_text_processing_is_linear() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOST, str(N)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(
            f"one STRICT cell printing {2 * N / 1e6:.1f} MB of 'A...\\r' + 'x\\b'... kept the host busy hashing its "
            f"output for over {BOUND} s (quadratic in process_stream_text)"
        )
    assert proc.returncode == 0, err[-3000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert got["status"] == "ok" and got["hash"], got
