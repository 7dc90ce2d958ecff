"""Outside review (5th): BASIC accepts ``cpu_percent_limit`` and does not enforce it.

Attack: a config with ``cpu_percent_limit=10`` (STRICT otherwise) on
``isolation_type=BASIC``. BASIC's profile has no cgroup, and the limit has
no rlimit counterpart, so nothing holds the worker to 10 %: the cell spins
for 1.5 s of wall time and gets a whole core. ``check_config`` refuses only
the network policy; the session starts and the audit record carries the
limit as if it held.

Judged from the host: either the backend refuses the config
(BackendUnavailableError / SandboxConfigError), or the CPU time the host
measured for the cell stays near 10 % of its wall time (3x slack).

Fix (suggested): ``backends/zygote_backend.py`` ``check_config``: refuse
``cpu_percent_limit`` (and any limit needing a cgroup) when the profile has
no cgroup or ``cgroups.available()`` is false, or when the v1 ``cpu``
controller / v2 ``cpu.max`` is missing (``confinement/cgroups/v1.py``,
``v2.py`` skip it silently today).
"""

from __future__ import annotations

import dataclasses

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.exceptions import BackendUnavailableError, SandboxConfigError

pytestmark = pytest.mark.timeout(120)

SPIN = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5:\n    pass\n"


def test_basic_enforces_or_refuses_cpu_percent_limit() -> None:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.BASIC)
    cfg = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, cpu_percent_limit=10.0))
    try:
        sandbox = OSSandbox(cfg)
        sandbox.__enter__()
    except (BackendUnavailableError, SandboxConfigError):
        return  # refused: what the charter asks for
    try:
        result = sandbox.run_cell(SPIN)
    finally:
        sandbox.__exit__(None, None, None)
    assert result.status == "ok", result
    assert result.metrics is not None and result.metrics.cpu_time_used is not None, result.metrics
    used = result.metrics.cpu_time_used
    assert used <= 1.5 * 0.10 * 3, f"cpu_percent_limit=10 accepted, but the cell used {used:.2f} s CPU in 1.5 s"
