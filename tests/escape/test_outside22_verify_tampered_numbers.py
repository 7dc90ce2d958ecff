"""Outside review (22nd): ``glsandbox audit verify`` dies with a traceback on a JSONL chain edited to hold
a value JSON parsers accept but the canonical encoder refuses, and ``AuditLog.emit`` loses a record holding
an int beyond a double's range.

Attack (a tamperer with write access to the audit file): edit one field of a sealed record so that it holds

- an integer beyond ~1.8e308 (``10**400``): ``canonical.py`` writes ints past 2**53 as ``float(obj)``,
  which raises ``OverflowError``;
- ``NaN`` (Python's ``json`` reads it): ``js_number`` raises ``ValueError``;
- an array nested 300 deep: ``jcs_dumps`` raises ``ValueError`` (its depth limit is 200);
- an array nested 100000 deep: ``json.loads`` raises ``RecursionError`` in ``verify._parse_lines``
  (it catches only ``ValueError``).

Measured: for each, stdout holds no verdict, stderr a Python traceback, exit status 1 (so a script
reading only the status still fails the file, but the auditor gets no named problem, and every later
record goes unchecked). ``verify_records`` catches nothing around ``compute_record_hash``.

The same encoder on the sealing side: ``AuditLog.emit`` with ``extra={"n": 10**400}`` raises
``OverflowError`` and writes nothing; ``log._encode_body`` falls back (scrub, ``audit_fallback``) only on
``TypeError, ValueError, UnicodeError, RecursionError`` - the module promises "no content can stop a
record being written". (Host-side content only: no path from the sandbox into a record carries such an
int that this review found.)

Severity: low. Fix: in ``verify_records``, treat any exception of ``compute_record_hash`` as that
record's problem ("cannot be canonicalised: ...: edited"); in ``_parse_lines`` catch ``RecursionError``
as a damaged line; in ``canonical._encode`` raise ``ValueError`` for an int whose double overflows
(or add ``OverflowError``/``ArithmeticError`` to ``_encode_body``'s fallback, and let ``_scrub`` bound
ints). Worse with group commit: ``_seal_queue`` seals the whole queue as one batch, so the error drops
the good records queued with it, and without a chain file ``_write`` has already moved the chain head
past them (measured: records 1 and 3 lost, record 4 at seq 1 chained to a lost hash, verify fails).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel.audit import AuditLog
from glsandbox_kernel.audit.sinks import JsonlFileSink

from ..conftest import glsandbox_cli


def _chain(path: Path) -> list[str]:
    log = AuditLog(session_id="s", sinks=[JsonlFileSink(path)])
    for _ in range(2):
        log.emit("execution_success", isolation_type="x", sandbox_mode="y", security_level="z", extra={"n": 5})
    log.close()
    return path.read_text().splitlines()


EDITS = {
    "int beyond a double": "1" + "0" * 400,
    "NaN": "NaN",
    "array 300 deep": "[" * 300 + "]" * 300,
    "array 100000 deep": "[" * 100000 + "]" * 100000,
}


@pytest.mark.parametrize("what", list(EDITS))
def test_edited_record_gets_a_verdict_not_a_traceback(tmp_path: Path, what: str) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = _chain(path)
    assert '"n":5' in first
    path.write_text(first.replace('"n":5', '"n":' + EDITS[what]) + "\n" + second + "\n")
    result = glsandbox_cli("audit", "verify", str(path), timeout=120)
    assert "Traceback" not in result.stderr and "FAILED" in result.stdout, (
        f"{what}: rc={result.returncode} stdout={result.stdout.strip()[:200]!r} "
        f"stderr={result.stderr.strip().splitlines()[-1:]}"
    )


def test_a_record_with_a_huge_int_is_still_written(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(session_id="s", sinks=[JsonlFileSink(path)])
    try:
        log.emit("execution_error", isolation_type="x", sandbox_mode="y", security_level="z", extra={"n": 10**400})
    finally:
        log.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 1, "the record was lost: emit raised instead of writing it (marked audit_fallback)"


def test_a_deeply_nested_notebook_gets_a_verdict(tmp_path: Path) -> None:
    """The same 100000-deep array in a notebook: a named usage error (exit 2), not a traceback."""
    path = tmp_path / "deep.ipynb"
    nb = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    path.write_text(nb[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}")
    result = glsandbox_cli("audit", "verify", str(path), timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-300:]
    assert "nested too deeply" in result.stderr


def test_one_unsealable_record_does_not_take_its_batch_with_it() -> None:
    """Group commit: the queue is sealed as one batch; the huge int's ``OverflowError`` drops the good
    record queued before it, and the chain head has moved past it (the log's chain no longer verifies)."""
    from glsandbox_kernel.audit import verify_records
    from glsandbox_kernel.audit.sinks import MemorySink

    log = AuditLog(session_id="s", sinks=[MemorySink()])
    fields: dict[str, Any] = {"isolation_type": "x", "sandbox_mode": "y", "security_level": "z"}
    try:
        for n in (1, 10**400, 3):
            log.append("execution_success", **fields, extra={"n": n})
        with contextlib.suppress(OverflowError):
            log.commit()
        log.append("execution_success", **fields, extra={"n": 4})
        records = log.records
    finally:
        log.close()
    kept = [r["extra"]["n"] for r in records]
    result = verify_records(records)
    assert 1 in kept and 4 in kept and result.ok, f"kept {kept}; verify: {result.problems}"
