"""Outside review 28 (auditor): a record metric of the wrong type crashes ``audit verify`` and ``report``.

Severity: low. ``audit verify`` re-derives each cell's visible audit line from its record
(``checks._check_audit_output`` -> ``evidence.audit_bundle`` -> ``summary_line`` ->
``units.fmt_bytes(float(n))``). A tamperer who sets ``record.metrics.memory_peak_bytes`` to a string
or a list (the record is the notebook's, untrusted) makes ``float()`` raise: the auditor gets a Python
traceback (``ValueError: could not convert string to float``) instead of a verdict, no ``FAILED`` line
and none of the notebook's other problems; ``glsandbox report`` crashes the same way. The exit code
is 1, so nothing passes, but the tool the auditor runs names neither this tampering nor any other.

Judged from the host: ``glsandbox audit verify`` / ``report`` on the edited notebook: no traceback,
a ``FAILED`` verdict naming the cell.

Suggested fix: take record figures through one bounded conversion that never raises (as
``terminal_text.as_text`` does for reply fields), and report a non-number as a problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from ..jupyter.test_evidence import SOURCES, build_notebook

pytestmark = pytest.mark.timeout(300)
AUDIT = "application/vnd.glsandbox.audit+json"


@pytest.mark.parametrize("value", ["x", [1]], ids=["str", "list"])
def test_a_mistyped_record_metric_is_a_named_problem_not_a_crash(tmp_path: Path, value: object) -> None:
    nb = json.loads(json.dumps(build_notebook(SOURCES[:2])))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    audit = next(o for o in cell["outputs"] if AUDIT in o.get("data", {}))
    audit["data"][AUDIT]["record"]["metrics"]["memory_peak_bytes"] = value
    cell["metadata"].pop("glsandbox", None)
    path = tmp_path / "edited.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    verify = glsandbox_cli("audit", "verify", str(path))
    said = verify.stdout + verify.stderr
    assert verify.returncode == 1, said
    assert "Traceback" not in said and "FAILED" in said, f"audit verify crashed on an edited metric:\n{said[-1500:]}"
    report = glsandbox_cli("report", str(path), "-o", str(tmp_path / "evidence.html"))
    assert "Traceback" not in report.stderr, f"glsandbox report crashed:\n{report.stderr[-800:]}"
