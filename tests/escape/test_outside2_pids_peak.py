"""Outside review (3rd): ``pids_peak`` is a sample, not a peak: a burst of 12 tasks reads as 4.

Attack (or plain use): the sandboxed cell runs 12 threads at once for a few
milliseconds (a fork/thread burst), then idles for a second. The namespace
backend reports ``pids_peak`` from periodic samples of ``pids.current``
(cgroup v1 has no ``pids.peak``), so the burst, up against the pids limit,
is absent from the metrics and the audit record (measured, 3 runs of 3:
``pids_peak`` 4 while 13 tasks ran; the same threads kept alive for 2 s read
as 16). The charter: a metric not measured is None, never a made-up number.
(The burst lasts a few ms against a sampling period of ~0.25 s: a sample
may catch it by chance, a few percent of runs.)

Judged from the host: where the kernel keeps a pids peak for the
sandbox's cgroup (``pids.peak``: v2 since Linux 6.1, v1 on recent kernels),
``pids_peak`` is at least the number of tasks the cell ran at once (every
run: no sample can pass it by chance). Elsewhere it is documented as the
highest sample, and the test skips saying so.

Fix (suggested): ``confinement/cgroups/v1.py``/``metrics.py``: report
``pids_peak`` only where the kernel keeps a peak (cgroup v2 ``pids.peak``),
else None (or name it ``pids_sampled_max``).
"""

from __future__ import annotations

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = pytest.mark.skipif(not OK, reason=f"namespace: {WHY}")

THREADS = 12

CODE = f"""
import threading, time
gate = threading.Barrier({THREADS + 1})
threads = [threading.Thread(target=gate.wait) for _ in range({THREADS})]
for t in threads:
    t.start()
gate.wait()
for t in threads:
    t.join()
time.sleep(1.0)
print("ran", {THREADS}, "threads at once")
"""


def test_pids_peak_is_a_peak_or_none() -> None:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
    with OSSandbox(cfg) as sb:
        result = sb.run_cell(CODE)
        peak = sb.metrics.pids_peak
        cgroup = getattr(sb.session.worker, "cgroup", None)
        kernel_peak = cgroup.pids_peak() if cgroup is not None else None
    assert result.status == "ok", result
    if kernel_peak is None:
        # Without a kernel peak the figure is the monitor's highest sample, documented as such
        # (SandboxMetrics): judging it here would pass or fail by chance.
        pytest.skip("the kernel keeps no pids.peak for this sandbox's cgroup (or there is none)")
    assert kernel_peak >= THREADS + 1, kernel_peak
    assert peak is not None and peak >= THREADS + 1, (
        f"the cell ran {THREADS + 1} tasks at once; pids_peak says {peak} (a sample presented as a peak)"
    )
