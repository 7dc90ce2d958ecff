"""Outside review (4th): the sandbox can make the host report that it hit the CPU time limit.

Attack: the sandboxed cell sends itself ``SIGXCPU`` (``os.kill(os.getpid(),
signal.SIGXCPU)``) after a few milliseconds of CPU. The init mirrors the
worker's wait status, and the host turns "killed by SIGXCPU" into
"signal SIGXCPU (CPU time limit of 30 s)" in the error and the audit record,
and records the reason ``cpu_time``, after a few milliseconds of CPU. A sandbox
can so blame its end on a limit (or hide a crash behind one); the host's
explanation should come from what the host measured.

Judged from the host: when the error names the CPU time limit, the host's
own ``cpu_time_used`` is at least that limit (measured: the metrics are None
after the crash, so nothing backs the claim; the cell ran for milliseconds).

Fix (suggested): ``results.py`` (where SIGXCPU becomes "CPU time limit" and
reason ``cpu_time``): name the limit only when the host's measured CPU time
reached it (else "SIGXCPU, sent by the sandbox itself").
"""

from __future__ import annotations

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(120)]


def test_the_cpu_limit_is_named_only_when_it_was_reached() -> None:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
    limit = cfg.limits.cpu_time_limit_seconds
    with OSSandbox(cfg) as sb:
        result = sb.run_cell("import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)")
        used = result.metrics.cpu_time_used if result.metrics is not None else None
    said = result.error_value or ""
    assert result.status == "error", result
    claims_limit = "CPU time limit" in said
    assert not claims_limit or (used is not None and limit is not None and used >= limit), (
        f"the host says {said!r} after measuring {used} s of CPU (limit {limit} s)"
    )
