"""A call whose worker dies mid-call keeps the CPU time it used, measured outside.

The session discards a dead worker (and its cgroup) before it reads the call's closing figures;
before the fix the crashed call's ``cpu_time_used`` was None, and the kernel's per-cell SIGXCPU
verdict rested on the monitor's last sample, which lags the call by up to a sampling period.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig, SandboxCrashedError
from glsandbox_kernel.backends.registry import backends


def burn_then_die(seconds: float) -> None:
    """SANDBOX side: spin on the CPU for ``seconds`` of CPU time, then SIGKILL itself."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("isolation", [IsolationType.BASIC, IsolationType.NAMESPACE])
def test_a_crashed_call_keeps_its_cpu_time(isolation: IsolationType) -> None:
    ok, why = backends()[isolation.value].available()
    if not ok:
        pytest.skip(f"{isolation.value}: {why}")
    with OSSandbox(OSSandboxConfig(isolation_type=isolation, execution_timeout=60.0)) as sb:
        sb.execute(int)
        if not sb.metrics.measured_by.startswith("cgroup"):
            pytest.skip(f"{isolation.value} here reads /proc ({sb.metrics.measured_by}): a dead process's CPU is gone")
        with pytest.raises(SandboxCrashedError, match="SIGKILL"):
            sb.execute(burn_then_die, 0.6)
        used = sb.metrics.cpu_time_used
        assert used is not None, "the crashed call's CPU time was not kept"
        assert 0.5 <= used < 30.0
        assert sb.execute(int) == 0  # a fresh worker after the crash
