"""Outside review 26: a deleted executed cell goes unnamed when its record is moved into the next audit output.

Severity: medium-high for unsealed notebooks (JupyterLab without the server extension, papermill/nbclient), the
case where verify's own chain checks are the only cover. Deleting an executed cell is named ("1 record(s)
missing between cell 1 and it: a cell was deleted"), also with signed records. But a tamperer who deletes the
cell (its source, outputs and audit output) and appends its unchanged record to the *next* cell's audit output
``preceding`` list gets ``OK ... chain intact, sources and outputs match`` from ``audit verify`` and
``--strict`` (no warning; with ``$GLSANDBOX_AUDIT_KEY``-signed records: "signatures verified", only the generic
missing-seal warning). No hash is recomputed and no signature is needed: records are moved, never changed.
Moving a re-run cell's ``superseded`` records into ``preceding`` likewise hides the re-execution from ``--strict``.

Where: ``notebook/verify.py`` (and the chain walk it calls) accepts any record in an audit output's
``preceding`` as part of the chain; ``preceding`` is meant for records made between cells (``session_start``,
violations between calls), but nothing checks that a record there is not a *cell* record (``extra.kind ==
"cell"``, with its own ``source_hash``/``outputs_hash``, ``call_id``). The audit output's list layout is not
covered by any hash, only the records in it.

How judged: nbclient runs three cells in the glsandbox kernel; the untouched notebook verifies; plain deletion of
cell 2 fails (control); deletion + move of its record into cell 3's ``preceding`` verifies OK, ``--strict`` too.

Suggested fix: a record in ``preceding`` must not be a cell record (or a cell's record must be the ``record`` of
an audit output of a cell whose source and outputs match it); name "a cell's record without its cell (the cell
was deleted)" otherwise. Same rule for ``superseded``: only records of the same cell (same ``cellId``/code cell).
"""

from __future__ import annotations

import copy
from typing import Any

from .test_outside15_common import executed, verify

AUDIT = "application/vnd.glsandbox.audit+json"
CELLS = ("factor = 2.68\nprint('factor', factor)", "print('sent the data out')", "print('total', 100 * factor)")


def _audit(cell: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = next(o["data"][AUDIT] for o in cell["outputs"] if AUDIT in o.get("data", {}))
    return payload


def test_a_deleted_cell_whose_record_moved_into_preceding_is_named(tmp_path) -> None:
    nb = executed(tmp_path, "glsandbox", *CELLS)
    honest = verify(nb, tmp_path, name="honest.ipynb")
    assert honest.returncode == 0, honest.stdout + honest.stderr
    code = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]

    plain = copy.deepcopy(nb)
    del plain["cells"][code[1]]
    control = verify(plain, tmp_path, name="plain-delete.ipynb")
    assert control.returncode == 1 and "missing" in control.stdout, control.stdout

    moved = copy.deepcopy(nb)
    record = _audit(moved["cells"][code[1]])["record"]
    assert record["extra"]["kind"] == "cell"
    del moved["cells"][code[1]]
    nxt = _audit(moved["cells"][code[2] - 1])
    nxt["preceding"] = [*nxt.get("preceding", []), record]
    for args in ((), ("--strict",)):
        result = verify(moved, tmp_path, *args, name="moved.ipynb")
        assert result.returncode == 1, (
            f"verify {' '.join(args)}: an executed cell was deleted and its record moved into the next cell's "
            f"audit output 'preceding'; nothing is named:\n{result.stdout}{result.stderr}"
        )
