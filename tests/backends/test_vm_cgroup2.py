"""cgroup v2, tested for real: part of the suite run inside the VM guest (``scripts/test-cgroup2-vm``).

This host runs cgroup v1 (or hybrid), so the confinement's cgroup v2 code
never runs here otherwise. The runner boots the guest image with
``cgroup_no_v1=all`` (cgroup2 with nsdelegate, +memory +pids +cpu +io) and
runs the confinement, engine, warm-pool and escape tests of
:data:`glsandbox_kernel.backends.vm.selftest.DEFAULT_TESTS` as root in the
guest; this test runs the runner and asserts pytest passed in there. It is
how ``.ci/run`` (``scripts/test``) runs the v2 tests. Skipped, with the
reason, only where the VM backend cannot run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from glsandbox_kernel.backends.vm import VMBackend, detect_accel
from glsandbox_kernel.backends.vm.selftest import BASE_RUN_TIMEOUT, DEFAULT_TESTS, timeout_scale

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OK, _WHY = VMBackend.available()
_SCALE = timeout_scale(detect_accel().name) if _OK else 1.0


@pytest.mark.slow
@pytest.mark.skipif(not _OK, reason=f"VM backend unavailable here: {_WHY}")
@pytest.mark.timeout(int(BASE_RUN_TIMEOUT * _SCALE) + 120)
def test_cgroup_v2_suite_passes_inside_the_vm() -> None:
    proc = subprocess.run(
        [os.path.join(ROOT, "scripts", "test-cgroup2-vm")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")},
        check=False,
    )
    out = proc.stdout
    sys.stdout.write(out[-6000:])  # shown with -s or on failure
    # The guest really ran cgroup v2 only, with the four controllers delegated.
    assert "cgroup mount: cgroup2 cgroup2 rw,nsdelegate" in out, out[-3000:]
    assert re.search(r"subtree_control: .*\bcpu\b.*\bio\b.*\bmemory\b.*\bpids\b", out), out[-3000:]
    assert "cgroup v1 hierarchies in use: none" in out
    assert proc.returncode == 0, out[-6000:]
    summary = re.findall(r"(\d+) passed", out)
    assert summary and int(summary[-1]) == len(DEFAULT_TESTS), out[-3000:]  # all ran in there, none skipped
