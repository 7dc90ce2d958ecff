"""Outside review (10th): a ``%%sandbox`` cell can leave no audit record by sending one odd display frame.

Attack: the cell sends, through its worker's channel, a ``display_data``
frame whose ``data`` has the key ``2**20000`` (an int), then goes on
(writes, prints). ``active_content.clean_bundle`` skips non-str MIME keys,
and the magic's ``display.show_output`` -> ``_dict`` stringifies keys with
``str(k)``, which raises ``ValueError`` for an int past 4300 digits. The
exception leaves the magic's ``on_output`` callback (the kernel's relay
catches its own; the magic does not), ends ``run_cell`` on the host and
skips ``ipython_emit_audit`` and the record: the cell ran in the sandbox and
the session's chain has no record of it, yet still verifies. The rest of the
cell keeps running in the worker: its ``print('after')`` shows up under the
next cell.

Measured from the host (magic in InteractiveShell, ``--audit FILE``): three
cells ran (``x = 1``, the attack, ``print('third')``); the JSONL log and
``%sandbox audit`` hold ``session_start`` and two execution records, "hash
chain verified"; the user saw a host ``ValueError`` traceback from
``magics/display.py``. Severity: medium (evidence gap: code that ran, wrote
files at LENIENT, is absent from the tamper-evident record; a library
``OSSandbox.run_cell`` of the same cell keeps its record).

Judged from the host: every cell that ran in the sandbox has its execution
record in the session's audit log, and the cell's failure (if any) is the
magic's SandboxError, not a host exception.

Fix (suggested): ``magics/display._dict`` / ``show_output``: the relay's
``json_safe``/``as_dict`` (bounded ``str`` of keys) instead of ``str(k)``; wrap
the magic's ``on_output`` so that any exception drops the frame (recorded),
as ``kernel/relay.IOPubRelay.output`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(200)]

SCRIPT = r"""
import sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "glsandbox_kernel")
opts = f"strict --isolation namespace --audit {sys.argv[1]}"
cells = [
    "x = 1\n",
    "import sys\n"
    "sys.stdout.conn.send({'type': 'display_data', 'data': {2**20000: 'x'}, 'metadata': {}})\n"
    "print('after')\n",
    "print('third')\n",
]
for cell in cells:
    result = shell.run_cell(f"%%sandbox {opts}\n{cell}")
    err = result.error_in_exec
    print("CELL", type(err).__name__ if err is not None else "-", flush=True)
"""


def test_every_magic_cell_has_its_record(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, timeout=180, check=False
    )
    cells = [ln.split()[1] for ln in res.stdout.splitlines() if ln.startswith("CELL ")]
    assert len(cells) == 3, (res.stdout[-1500:], res.stderr[-1500:])
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    executions = [r for r in records if r.get("extra", {}).get("kind") == "cell"]
    assert len(executions) == 3, (
        f"3 cells ran in the sandbox, the audit log holds {len(executions)} execution records "
        f"({[r.get('event_type') for r in records]})"
    )
    assert cells[1] != "ValueError", f"the sandbox's frame raised a host ValueError in the magic: cells {cells}"
