"""Harden: the seccomp supervisor kept every DISTINCT violation kind of a call, without a cap.

The supervisor's rate limit is per kind (syscall and detail), and the detail
of a denied syscall holds its arguments (an exec's, the path's basename): a
permissive-mode call that varies one argument makes a new kind each time, and
the first of every kind is always recorded. Measured from the host: 5 000
``ptrace(PTRACE_ATTACH, i)`` with distinct ``i`` gave 5 000 records in the
call, 5 000 audit-log lines and 5 000 dicts kept by the supervisor (for the
whole session), at the sandbox's pace; distinct exec paths alike. The network
proxy caps the same flood (``max_kinds``: 64 kinds, the rest merged).

Expected: the first ``max_kinds`` kinds of a call recorded as now, the rest
merged into one kind (rate-limited, counted in ``repeats``), every violation
still counted; the supervisor's own list bounded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glsandbox_kernel import OSSandbox, SandboxMode, SecurityLevel, create_config_by_level
from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(300)]

N = 5000
FLOODS = {
    "ptrace": f"import ctypes\nlibc = ctypes.CDLL(None)\nfor i in range({N}):\n    libc.ptrace(16, i + 100000, 0, 0)\n",
    "exec": f"import os\nfor i in range({N}):\n    try:\n        os.execv(f'/bin/x{{i}}', ['x'])\n"
    "    except OSError:\n        pass\n",
}


@pytest.mark.parametrize("flood", sorted(FLOODS))
def test_distinct_violation_kinds_are_capped_and_counted(flood: str, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    config = create_config_by_level(
        SecurityLevel.STRICT,
        isolation_type="namespace",
        execution_timeout=240.0,
        sandbox_mode=SandboxMode.PERMISSIVE,
        audit_log_path=str(log),
    )
    with OSSandbox(config) as sandbox:
        result = sandbox.run_cell(FLOODS[flood] + "print('all denied')")
        kept = len(sandbox._session.worker.supervisor.violations)  # type: ignore[union-attr]
    assert result.status == "ok", result.error_value
    with open(log, encoding="utf-8") as fh:
        lines = sum(1 for line in fh if '"violation"' in line and line.strip())
    records = result.violations
    assert len(records) < 300 and lines < 300 and kept < 300, (
        f"{N} distinct {flood} violations in one call: {len(records)} records in the call, "
        f"{lines} audit lines, {kept} dicts kept by the supervisor"
    )
    total = sum((0 if r.get("summary") else 1) + r.get("repeats", 0) for r in records)
    assert total == N == result.metrics.violations_detected  # every one counted
    assert any("merged" in str(r.get("detail")) for r in records)
    json.dumps(records)
