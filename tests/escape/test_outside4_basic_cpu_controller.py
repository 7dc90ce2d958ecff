"""A cgroup without the cpu controller refuses ``cpu_percent_limit`` instead of skipping the quota.

The cgroup writers (``confinement/cgroups/v1.py``, ``v2.py``) used to leave
the CPU quota out when the cpu controller was missing, and the sandbox ran
unthrottled while its audit record carried the limit. Made for real: a
process in a private mount namespace whose ``/sys/fs/cgroup`` is unmounted
and replaced by a fresh tmpfs with only the host's memory and pids
hierarchies mounted (cgroup v1,
no cpu). There, a BASIC or NAMESPACE sandbox with ``cpu_percent_limit`` is
refused at start with ``BackendUnavailableError`` naming the missing
controller, the v1 writer itself raises ``ConfinementError`` (and leaves no
directory), and without ``cpu_percent_limit`` the sandbox still gets its
cgroup. The cgroup v2 case (the cpu controller not in the host cgroup's
``cgroup.controllers``) cannot be made for a sandbox host: v2 makes
sandbox cgroups only below a host cgroup that may enable controllers for
its children, i.e. the root (a non-root cgroup with processes cannot), and
the root's ``cgroup.controllers`` always lists cpu unless cpu is bound to a
v1 hierarchy: the hybrid case, which is the v1 situation made here. The v2
writer raises the same ``ConfinementError`` (``v2.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from glsandbox_kernel.confinement.cgroups import CgroupV1

pytestmark = pytest.mark.timeout(120)

CHILD = r"""
import dataclasses, json, os, sys, uuid
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.basic import flush_cleanups
from glsandbox_kernel.confinement import cgroups
from glsandbox_kernel.confinement.cgroups import CgroupV1
from glsandbox_kernel.exceptions import BackendUnavailableError, ConfinementError

out = {"hierarchies": sorted(CgroupV1.hierarchies()), "available": cgroups.available()}
cfg = create_config_by_level("strict", isolation_type=IsolationType(sys.argv[1]))
cpu = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, cpu_percent_limit=10.0))
try:
    with OSSandbox(cpu) as sb:
        out["cpu"] = sb.run_cell("1").status
except BackendUnavailableError as exc:
    out["cpu"] = "refused: " + str(exc)
name = "cputest-" + uuid.uuid4().hex[:6]
try:
    mgr = CgroupV1(name)
    mgr.create(cpu.limits)
    out["writer"] = "created"
    mgr.remove()
except ConfinementError as exc:
    out["writer"] = "raised: " + str(exc)
out["writer_left"] = [d for d in CgroupV1.hierarchies().values() if any(name in n for n in os.listdir(d))]
with OSSandbox(cfg) as sb:
    out["plain"] = sb.run_cell("1").status
    out["plain_cgroup"] = open(f"/proc/{sb.worker_pids[0]}/cgroup").read()
flush_cleanups(30)
print(json.dumps(out))
"""

SETUP = """
set -e
mount --make-rprivate /
umount -R /sys/fs/cgroup
mount -t tmpfs -o mode=755 cgroup-test /sys/fs/cgroup
for c in memory pids; do mkdir /sys/fs/cgroup/$c; mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c; done
exec "$@"
"""


def _v1_memory_and_pids_and_cpu() -> tuple[bool, str]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False, "needs root and unshare(1) to mount cgroup hierarchies in a private mount namespace"
    h = CgroupV1.hierarchies()
    if not all(c in h for c in ("memory", "pids", "cpu")):
        return False, (
            "cgroup v1 with memory, pids and cpu hierarchies is not what this host has "
            f"({sorted(h) or 'no v1 hierarchies'}); under cgroup v2 the missing-cpu case needs the cpu "
            "controller bound elsewhere, which a v2-only host cannot make"
        )
    return True, ""


_OK, _WHY = _v1_memory_and_pids_and_cpu()


@pytest.mark.skipif(not _OK, reason=_WHY)
@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_cgroup_v1_without_cpu_refuses_cpu_percent_limit(backend: str) -> None:
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", SETUP, "sh", sys.executable, "-c", CHILD, backend],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["hierarchies"] == ["memory", "pids"], out  # the situation is real: no cpu hierarchy
    assert out["available"][0], out  # cgroups can still be made ...
    assert out["cpu"].startswith("refused: ") and "cpu controller is not mounted" in out["cpu"], out
    assert "cpu_percent_limit=10" in out["cpu"], out
    assert out["writer"].startswith("raised: ") and "cpu controller" in out["writer"], out  # never skipped
    assert out["writer_left"] == [], out
    assert out["plain"] == "ok" and "glsandbox-" in out["plain_cgroup"], out  # ... and are, without the quota
