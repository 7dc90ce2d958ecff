"""Outside review 25b: a file the sandbox writes between two cells is in no audit record.

Severity: medium (evidence of results files, MODERATE's ``sandbox-output/`` and every LENIENT
project; every backend: the worker is persistent and its threads outlive the cell that started them).

README (Your project folder): "Each file a cell creates, changes or deletes there is listed in that
cell's audit record, ``extra.written_files`` ... so the notebook proves which cell produced which
results file, and ``glsandbox attest`` names them as subjects". ``OSSandbox.run_cell``/``_call`` take
the ``WriteTracker`` snapshot when the call starts and compare at its end; what changes between the
end of one call and the start of the next is in the next call's *before* snapshot, so no record
ever lists it. Widget callbacks (``send_comm``: sandboxed code run on a comm message) get no record
and no scan at all.

Attack: cell 1 writes ``sandbox-output/honest.csv`` and leaves a thread that writes
``sandbox-output/results.csv`` a second later; the host runs cell 2 (``pass``) after that.

What the host saw (namespace, MODERATE, measured): cell 1's record lists ``honest.csv`` only, cell 2's
lists nothing, ``results.csv`` (``forged,99``) is on the host disk with no record of any call naming it
(the same for a rewrite of ``honest.csv``: its record keeps the old digest and nothing says when it
changed). An attestation of the run leaves the file out of its subjects.

Expected: every change the host can see in the writable folders is in some record of the session:
the next call's (marked as written between calls), or the session's end.

Fix direction: keep each call's closing snapshot as the next call's opening one (changes between calls
go into the next record, ``change: "between calls"``), and scan once more at close (the ``session_end``
record); ``send_comm`` records its own scan (and the callback) like a call.
"""

from __future__ import annotations

import time
from pathlib import Path

from glsandbox_kernel import OSSandbox

from .test_outside5_common import namespace_project

CELL = """
import threading, time
def later():
    time.sleep(0.5)
    with open('sandbox-output/results.csv', 'w') as fh:
        fh.write('forged,99\\n')
    open('sandbox-output/done', 'w').close()
threading.Thread(target=later, daemon=True).start()
with open('sandbox-output/honest.csv', 'w') as fh:
    fh.write('a,1\\n')
"""


def test_files_written_between_cells_are_recorded(tmp_path: Path) -> None:
    project, cfg = namespace_project(tmp_path)
    with OSSandbox(cfg) as sandbox:
        sandbox.run_cell(CELL)
        for _ in range(300):  # the host waits for the thread's file (not a timing assertion)
            if (project / "sandbox-output" / "done").exists():
                break
            time.sleep(0.05)
        sandbox.run_cell("pass")
    records = sandbox.audit_records
    named = {
        Path(entry["path"]).name
        for record in records
        for entry in (record.get("extra") or {}).get("written_files") or []
        if isinstance(entry, dict) and "path" in entry
    }
    assert (project / "sandbox-output" / "results.csv").read_text() == "forged,99\n"
    assert "results.csv" in named, (
        f"sandbox-output/results.csv was written by the sandbox between two cells and no record names it "
        f"(records name {sorted(named)})"
    )
