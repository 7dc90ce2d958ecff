"""Review 16: what verify checks of a cell beyond its outputs (the host-side pure parts, no kernel).

The ``%%sandbox`` line of a magic cell (``extra.magic_line``; older records as they were made), the
source forms a glsandbox-kernel notebook accepts, the level a line asks for read by the magic's own
parser, a renumbered prompt named as such, the metadata copy's summary re-derived, and who sealed.
The end-to-end cases (real kernels, ``glsandbox run``, the server) are tests/escape/test_outside15_*.
"""

from __future__ import annotations

import ast
import copy
from typing import Any

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from glsandbox_kernel.kernel.limits import commented_options_line
from glsandbox_kernel.notebook.cell_source import check_source, line_level, magic_line, source_hashes
from glsandbox_kernel.notebook.checks import CellCheck, _check_audit_output
from glsandbox_kernel.notebook.evidence import AUDIT_MIME, audit_bundle, saved_outputs_evidence, source_hash
from glsandbox_kernel.notebook.metadata import cell_metadata, summary_differences
from glsandbox_kernel.notebook.seal import check_seal, seal_notebook

from .test_outputs_format import OUTPUTS

SOURCES = [
    "%%sandbox moderate --network 127.0.0.1:9 --timeout 30\nprint('ran')",
    "%%sandbox\nprint(1)\n",
    "\n\n%%sandbox lenient  --no \nx = 1",
    "  %%sandbox strict\n  y = 2",
    "%%sandbox --in a,b --out c\r\nc = a + b",
]


@pytest.mark.parametrize("source", SOURCES)
def test_magic_line_is_the_line_ipython_passes_the_magic(source: str) -> None:
    call = ast.parse(TransformerManager().transform_cell(source)).body[0]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    name, line, _body = (ast.literal_eval(a) for a in call.value.args)
    assert name == "sandbox"
    assert magic_line(source) == line


def test_the_level_is_read_by_the_magics_own_parser() -> None:
    assert line_level("") == "moderate"
    assert line_level("strict --timeout 5") == "strict"
    assert line_level("--no lenient") == "lenient"  # --no: the prefix of --no-monitor, no value taken
    assert line_level("--network none lenient") == "lenient"
    assert line_level("--n lenient") is None  # ambiguous: the magic refuses it
    assert line_level("extreme") is None


def _record(source_hash_: str, level: str = "moderate", **extra: Any) -> dict[str, Any]:
    return {"security_level": level, "extra": {"kind": "cell", "source_hash": source_hash_, **extra}}


def _check(source: str, record: dict[str, Any], kernel: str | None) -> CellCheck:
    check = CellCheck(index=1, execution_count=1)
    check_source(check, source, record, kernel)
    return check


def test_a_glsandbox_kernel_cell_matches_only_its_plain_or_commented_source() -> None:
    plain = "print('a')"
    prepended = "%%sandbox moderate --network none --timeout 1\n" + plain
    assert source_hash(plain) not in source_hashes(prepended, "glsandbox")
    assert source_hash(plain) in source_hashes(prepended, "magic")  # an older magic record: the body
    assert source_hash(plain) in source_hashes(prepended, None)
    limited = "%%sandbox --timeout 5\nprint('a')"
    assert source_hashes(limited, "glsandbox") == {source_hash(limited), source_hash(commented_options_line(limited))}
    got = _check(prepended, _record(source_hash(plain)), "glsandbox")
    assert got.source_ok is False and "source edited" in got.problems[0]
    # the kernel's limits line names no level: no level alarm in a glsandbox-strict notebook
    ok = _check(limited, _record(source_hash(commented_options_line(limited)), "strict"), "glsandbox")
    assert ok.source_ok and not ok.problems


def test_a_magic_record_binds_its_line_and_an_older_one_checks_as_made() -> None:
    source = SOURCES[0]
    body = source.split("\n", 1)[1]
    line = magic_line(source)
    assert _check(source, _record(source_hash(body), magic_line=line), "magic").problems == []
    for edited in (
        "moderate --network none --timeout 30",
        "moderate --isolation vm --network 127.0.0.1:9 --timeout 30",
    ):
        got = _check(f"%%sandbox {edited}\n{body}", _record(source_hash(body), magic_line=line), "magic")
        assert got.source_ok is False
        assert got.problems == [
            f"cell 2 (In [1]): its %%sandbox line was edited after it ran: it shows '%%sandbox {edited}', "
            f"the cell ran with '%%sandbox {line}'"
        ]
    # with its line recorded, a magic cell's record covers the body only (never the kernel's forms)
    got = _check(source, _record(source_hash(commented_options_line(source)), magic_line=line), "magic")
    assert got.source_ok is False and "source edited" in got.problems[0]
    # an older magic record (no magic_line): the body and the level word, as before
    old = _record(source_hash(body))
    assert _check("%%sandbox moderate --network none\n" + body, old, "magic").problems == []
    assert _check("%%sandbox --no moderate\n" + body, old, "magic").problems == []
    got = _check("%%sandbox strict\n" + body, old, "magic")
    assert "says level strict but it ran at level moderate" in got.problems[0]


RECORD = {
    "security_level": "moderate",
    "isolation_type": "namespace",
    "event_type": "execution_success",
    "record_hash": "ab" * 32,
    "extra": {"kind": "cell"},
}


def _audit_output(count: int | None) -> dict[str, Any]:
    data, meta = audit_bundle(RECORD, [], execution_count=count)
    return {"output_type": "display_data", "data": data, "metadata": meta}


def test_a_renumbered_prompt_is_named_as_such_not_as_a_rewritten_line() -> None:
    output = _audit_output(1)
    payload = output["data"][AUDIT_MIME]
    same = CellCheck(index=1, execution_count=1)
    _check_audit_output(same, output, payload, RECORD)
    assert not same.problems and not same.warnings and not same.renumbered
    for now in (7, None):
        moved = CellCheck(index=1, execution_count=now)
        _check_audit_output(moved, output, payload, RECORD)
        assert not moved.problems and moved.renumbered
        assert "the execution count was changed after it ran" in moved.warnings[0]
        assert "its audit line shows cell 1" in moved.warnings[0]
    rewritten = copy.deepcopy(output)
    rewritten["data"]["text/plain"] = rewritten["data"]["text/plain"].replace("namespace", "vm")
    both = CellCheck(index=1, execution_count=7)
    _check_audit_output(both, rewritten, payload, RECORD)
    assert not both.renumbered and "its visible audit line was rewritten" in both.problems[0]
    assert "its record gives 'glsandbox audit: cell 1 · moderate/namespace" in both.problems[0]


def _cell_with_copy(fmt: int) -> dict[str, Any]:
    """A code cell whose outputs hash differently in formats 1 and 2 (a big int), with its metadata copy."""
    evidence = saved_outputs_evidence(OUTPUTS, None)
    record = {**RECORD, "extra": {"kind": "cell", "source_hash": source_hash("x"), **evidence}}
    data, meta = audit_bundle(record, [])
    cell: dict[str, Any] = {
        "cell_type": "code",
        "source": "x",
        "metadata": {},
        "outputs": [*copy.deepcopy(OUTPUTS), {"output_type": "display_data", "data": data, "metadata": meta}],
    }
    cell["metadata"]["glsandbox"] = cell_metadata(cell, fmt)
    return cell


def test_the_metadata_copys_summary_is_rederived() -> None:
    for fmt in (2, 1):  # 1: a copy an older glsandbox wrote (outputs format 1) checks as it was made
        cell = _cell_with_copy(fmt)
        assert summary_differences(cell, cell["metadata"]["glsandbox"]) == []
    assert (
        _cell_with_copy(1)["metadata"]["glsandbox"]["outputs_hash"]
        != _cell_with_copy(2)["metadata"]["glsandbox"]["outputs_hash"]
    )
    cell = _cell_with_copy(2)
    assert cell["metadata"]["glsandbox"]["hashes_match"] is True
    tampered = dict(cell["metadata"]["glsandbox"], status="error", hashes_match=False)
    assert summary_differences(cell, tampered) == [
        "status 'error' (its record and the cell give 'ok')",
        "hashes_match 'False' (its record and the cell give 'True')",
    ]
    assert summary_differences(cell, {k: v for k, v in tampered.items() if k not in ("status", "hashes_match")}) == []


def test_the_seal_note_says_who_sealed_and_when() -> None:
    nb: dict[str, Any] = {"metadata": {}, "cells": [{"cell_type": "markdown", "source": "# r", "metadata": {}}]}
    seal_notebook(nb, None)
    assert "the seal names no maker" in " ".join(check_seal(nb, None)[1])
    nb["metadata"]["glsandbox"]["run"] = {"started": 1.0e9, "finished": 1.8e9, "completed": True}
    seal_notebook(nb, None)
    assert "sealed by 'glsandbox run' at 2027-01-15T08:00:00+00:00" in " ".join(check_seal(nb, None)[1])
    nb["metadata"]["glsandbox"]["sealed_by"] = {"by": "jupyter-server pre-save hook", "at": "2026-12-02T05:30:00+00:00"}
    seal_notebook(nb, None)
    problems, notes, sealed = check_seal(nb, None)
    assert sealed and not problems
    assert "sealed by the jupyter-server pre-save hook at 2026-12-02T05:30:00+00:00" in " ".join(notes)
