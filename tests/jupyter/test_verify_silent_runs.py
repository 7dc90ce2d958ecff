"""Verify names silent runs between cells and mistyped record figures (host-side verifier).

Notebooks are built from real ``OSSandbox.run_cell`` results (``test_evidence.build_notebook``'s
way): cell 1, then a silent run (its record lands in cell 2's ``preceding``, as the kernel puts
it), then cell 2. A silent run of empty code passes ``--strict``; any other code is a warning
naming where it ran and what it was, and a problem under ``--strict``; a record of an older
glsandbox (no ``silent_code``) is named by its hash. Then each number field of a record is set
to a string and a list: verify and report name the cell and field, and never crash.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import nbformat
import pytest

from glsandbox_kernel import OSSandbox, create_config_by_level
from glsandbox_kernel.notebook.evidence import AUDIT_MIME, SILENT_CODE_CHARS, AuditTrail, cell_binding
from glsandbox_kernel.notebook.held_records import METRIC_NUMBERS
from glsandbox_kernel.notebook.report import build_report
from glsandbox_kernel.notebook.verify import verify_notebook

from .test_evidence import _to_nbformat, build_notebook

pytestmark = pytest.mark.timeout(300)
CELLS = ["n = 1\nprint('n is', n)", "n += 10\nprint('now', n)"]


def _with_silent_run(code: str, binding: dict[str, Any]) -> Any:
    """Cells 1 and 2 run in one session, ``code`` silently between them (``binding``: its record's extra)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    trail = AuditTrail()
    with OSSandbox(create_config_by_level("moderate")) as box:
        for count, source in enumerate(CELLS, start=1):
            if count == 2:
                box.run_cell(code, silent=True, store_history=False, record_extra=binding)
            result = box.run_cell(source, record_extra=cell_binding({}, False))
            cell = nbformat.v4.new_code_cell(source)
            cell.execution_count = count
            cell.outputs = [_to_nbformat(o, count) for o in result.outputs]
            data, metadata = trail.bundle(box, result.audit_record, execution_count=count)
            cell.outputs.append(nbformat.v4.new_output("display_data", data=data, metadata=metadata))
            nb.cells.append(cell)
    return nb


@pytest.mark.parametrize("code", ["", "  \n\t\n"], ids=["empty", "blank"])
def test_a_silent_run_of_empty_code_passes_strict(code: str) -> None:
    nb = _with_silent_run(code, cell_binding({}, True, code))
    held = nb.cells[1].outputs[-1]["data"][AUDIT_MIME]["preceding"]
    assert [r["extra"].get("silent") for r in held if r["extra"].get("kind") == "cell"] == [True]
    strict = verify_notebook(nb, strict=True)
    assert strict.ok and not any("silent" in w for w in strict.warnings), (strict.problems, strict.warnings)


@pytest.mark.parametrize(
    ("code", "old", "kind"),
    [
        ("n = 1000", False, "(statements): 'n = 1000'"),
        ("n", False, "(an expression): 'n'"),
        ("%time n = 1000", False, "(not Python)"),
        ("n = 1000  # " + "x" * SILENT_CODE_CHARS, False, "(cut"),
        ("n = 1000", True, "(not recorded"),
    ],
    ids=["statements", "expression", "magic", "cut", "older-glsandbox"],
)
def test_a_silent_run_of_code_is_named_and_fails_strict(code: str, old: bool, kind: str) -> None:
    binding = {"silent": True, "cell_id": None} if old else cell_binding({}, True, code)
    nb = _with_silent_run(code, binding)
    code_hash = hashlib.sha256(code.encode()).hexdigest()[:16]
    plain = verify_notebook(nb)
    named = [w for w in plain.warnings if "a silent run" in w]
    assert plain.ok and len(named) == 1, (plain.problems, plain.warnings)
    for part in ("cell 2 (In [2])", "seq 2", "between cell 1 (In [1]) and cell 2 (In [2])", code_hash, kind):
        assert part in named[0], (part, named[0])
    strict = verify_notebook(nb, strict=True)
    assert not strict.ok and [p for p in strict.problems if p.startswith("--strict: ")] == [f"--strict: {named[0]}"]


def test_silent_code_recorded_is_bounded_and_flagged() -> None:
    short = cell_binding({"metadata": {"cellId": "c1"}}, True, "n = 1000")
    assert short == {"silent": True, "cell_id": "c1", "silent_code": "n = 1000", "silent_code_complete": True}
    long = cell_binding({}, True, "y" * (SILENT_CODE_CHARS + 1))
    assert len(long["silent_code"]) == SILENT_CODE_CHARS and long["silent_code_complete"] is False
    odd = cell_binding({}, True, "s = '\udc80'")  # a lone surrogate: kept escaped, so not as hashed
    assert odd["silent_code_complete"] is False and odd["silent_code"].encode("utf-8")
    assert "silent_code" not in cell_binding({}, False, "n = 1")


@pytest.fixture(scope="module")
def plain_notebook() -> Any:
    return build_notebook(["x = 6 * 7\nprint('x is', x)"])


@pytest.mark.parametrize("value", ["x", [1], {"a": 1}, True], ids=["str", "list", "dict", "bool"])
@pytest.mark.parametrize("field", ["execution_time", *(f"metrics.{name}" for name in METRIC_NUMBERS)])
def test_a_mistyped_record_figure_is_named_not_a_crash(plain_notebook: Any, field: str, value: Any) -> None:
    nb = copy.deepcopy(plain_notebook)
    record = nb.cells[0].outputs[-1]["data"][AUDIT_MIME]["record"]
    where = record["metrics"] if field.startswith("metrics.") else record
    where[field.removeprefix("metrics.")] = value
    nb.cells[0].metadata.pop("glsandbox", None)
    result = verify_notebook(nb)
    assert not result.ok
    assert any(p.startswith("cell 1 (In [1]): its record has mistyped field(s): " + field) for p in result.problems), (
        result.problems
    )
    page, _ = build_report(nb, title="edited")
    assert "FAILED" in page


@pytest.mark.parametrize("value", ["x", [1]], ids=["str", "list"])
def test_mistyped_metrics_and_violations_containers(plain_notebook: Any, value: Any) -> None:
    for name in ("metrics", "violations"):
        nb = copy.deepcopy(plain_notebook)
        nb.cells[0].outputs[-1]["data"][AUDIT_MIME]["record"][name] = value if name == "metrics" else "x"
        result = verify_notebook(nb)
        assert any(f"{name} is a" in p for p in result.problems), result.problems
        build_report(nb, title="edited")
