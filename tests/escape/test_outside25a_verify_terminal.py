"""Outside review 25a, finding: ``glsandbox audit verify NOTEBOOK`` prints notebook text raw to the terminal.

Severity: medium (the auditor's own tool lies on screen). The auditor runs ``glsandbox audit
verify`` on a notebook an analyst sent. Problems and warnings quote fields of the notebook
unescaped: a record's ``session_id`` ("its record is from session …"), the ``seq`` of a
superseded record and of the cell's record ("re-executed; … (seq X) are superseded by seq Y").
What I did: took an honest, signed ``glsandbox run`` notebook and put terminal control sequences
in those fields (clear the screen, home the cursor, print a green "OK: … signatures verified",
then SGR 8, conceal, which hides every later line). What I saw: the ESC bytes reach stdout as
written, so a terminal shows only the fake OK verdict (the exit status is still 1). ``glsandbox
audit verify FILE.jsonl`` escapes such text (``audit/cli.py`` ``_printable``) and ``glsandbox
run``/``exec`` use ``terminal_text.printable``; the notebook verifier does not. Expected: no
control character of the notebook reaches the terminal (escaped as ``\\x1b``). Fix direction:
pass every problem, warning and note through ``terminal_text.printable`` in
``verify_notebook_cli`` (and in ``report``/``attest`` text output), or quote notebook values
with ``!r`` where they are built.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import glsandbox_cli
from .test_outside25a_common import audit_payload, code_cells, signed_run, verify_file

SPOOF = "\x1b[2J\x1b[H\x1b[32mOK: emissions.ipynb: 2 code cell(s); signatures verified\x1b[0m\x1b[8m"


def _forged(tmp_path: Path) -> tuple[Path, Path]:
    """A signed run's notebook with terminal control sequences in its records' fields, and its public key."""
    nb, pub = signed_run(tmp_path)
    cell = code_cells(nb)[1]
    payload = audit_payload(cell)
    for record in (payload["record"], cell["metadata"]["glsandbox"]["record"]):
        record["session_id"] = "\x1b[2J\x1b[H\x1b[8m"
    payload["superseded"] = [{"seq": SPOOF, "extra": {"kind": "cell"}}]
    forged = tmp_path / "forged.ipynb"
    forged.write_text(json.dumps(nb), encoding="utf-8")
    return forged, pub


def test_verify_output_carries_no_terminal_escapes(tmp_path: Path) -> None:
    forged, pub = _forged(tmp_path)
    result = verify_file(forged, pub)
    assert result.returncode == 1, result.stdout
    shown = result.stdout + result.stderr
    leaked = [line for line in shown.splitlines() if "\x1b" in line]
    assert not leaked, f"terminal control sequences from the notebook reach the auditor's terminal: {leaked!r}"


def test_report_and_attest_output_carry_no_terminal_escapes(tmp_path: Path) -> None:
    """Added with the fix (branch textfix): ``glsandbox report`` and ``attest`` print the same problems."""
    forged, pub = _forged(tmp_path)
    report = glsandbox_cli("report", str(forged), "--pubkey", str(pub), "-o", str(tmp_path / "r.html"))
    key = tmp_path / "signing.key"
    attest = glsandbox_cli("attest", str(forged), "--sign-key", str(key), "-o", str(tmp_path / "a.intoto.jsonl"))
    for name, result in (("report", report), ("attest", attest)):
        assert result.returncode == 1, f"{name}: {result.stdout}{result.stderr}"
        shown = result.stdout + result.stderr
        assert "session \\x1b[2J" in shown, f"{name}: the forged problem is not shown: {shown}"
        leaked = [line for line in shown.splitlines() if "\x1b" in line]
        assert not leaked, f"{name}: terminal control sequences from the notebook reach the terminal: {leaked!r}"
