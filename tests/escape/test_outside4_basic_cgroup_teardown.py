"""BASIC's cgroup leaves nothing behind: removed on close, and swept after its host was SIGKILLed.

Where the host can make cgroups, BASIC puts each sandbox in one of its own
(``backends/basic.py``). Judged from the host: the worker is in a
``glsandbox-*`` cgroup whose ``pids.max`` is the config's ``max_processes``,
and cannot leave it, raise the limit or make a cgroup (uid 0 owns every
cgroup file; Landlock denies /sys); once the sandbox is closed (and the janitor flushed) no directory of it is
left in any hierarchy. A host killed with SIGKILL cannot remove its cgroups;
the first sandbox a later host process starts removes them (its directory
names the dead creator, ``confinement/cgroups/sweep.py``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.basic import flush_cleanups
from glsandbox_kernel.confinement import cgroups
from glsandbox_kernel.confinement.cgroups import CgroupV1, CgroupV2

pytestmark = [
    pytest.mark.skipif(not cgroups.available()[0], reason=f"no cgroups here: {cgroups.available()[1]}"),
    pytest.mark.timeout(120),
]

LIMIT = 20

#: The sandbox (uid 0 on a root host, which owns every cgroup file) tries to leave its cgroup,
#: raise its pids.max and make a cgroup of its own: Landlock must deny each.
ESCAPE = """
import os
paths = {}
for line in open("/proc/self/cgroup").read().splitlines():
    _, ctrl, path = line.split(":", 2)
    for c in ctrl.split(",") if ctrl else ["unified"]:
        paths[c] = path
done = []
for d in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
    for name, value in (("cgroup.procs", str(os.getpid())), ("tasks", str(os.getpid()))):
        try:
            with open(os.path.join(d, name), "w") as fh:
                fh.write(value)
            done.append(d + "/" + name)
        except OSError:
            pass
for c in ("pids", "unified"):
    own = os.path.normpath(("/sys/fs/cgroup/" + c) + paths.get(c, "/nonexistent") + "/pids.max")
    try:
        with open(own, "w") as fh:
            fh.write("max")
        done.append(own)
    except OSError:
        pass
try:
    os.mkdir("/sys/fs/cgroup/pids/glsandbox-escape")
    done.append("mkdir")
except OSError:
    pass
print("DONE", done)
"""


def _sandbox_cgroup_dirs(pid: int) -> list[str]:
    """HOST side: the directories (every hierarchy) of the glsandbox cgroup ``pid`` is in."""
    dirs = set(CgroupV1.hierarchies(pid).values())
    unified = CgroupV2.unified_dir(pid)
    if unified is not None:
        dirs.add(unified)
    return sorted(d for d in dirs if os.path.basename(d).startswith("glsandbox-"))


def test_basic_worker_is_in_its_own_pids_cgroup_and_close_removes_it() -> None:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.BASIC)
    cfg = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, max_processes=LIMIT))
    with OSSandbox(cfg) as sandbox:
        assert sandbox.run_cell("1").status == "ok"
        pid = sandbox.worker_pids[0]
        dirs = _sandbox_cgroup_dirs(pid)
        assert dirs, f"the BASIC worker {pid} is in no glsandbox cgroup: {open(f'/proc/{pid}/cgroup').read()}"
        pids_max = [d for d in dirs if os.path.exists(os.path.join(d, "pids.max"))]
        assert pids_max, dirs
        with open(os.path.join(pids_max[0], "pids.max")) as fh:
            assert fh.read().strip() == str(LIMIT)
        r = sandbox.run_cell(ESCAPE)
        said = "".join(str(o.get("text", "")) for o in r.outputs)
        assert r.status == "ok" and "DONE []" in said, said
        assert _sandbox_cgroup_dirs(pid) == dirs  # still inside, the limit unchanged
        with open(os.path.join(pids_max[0], "pids.max")) as fh:
            assert fh.read().strip() == str(LIMIT)
    assert flush_cleanups(30)
    left = [d for d in dirs if os.path.exists(d)]
    assert not left, f"closed BASIC sandbox left its cgroup: {left}"


HOST = r"""
import sys
from glsandbox_kernel import OSSandbox, create_config_by_level, IsolationType
sb = OSSandbox(create_config_by_level("strict", isolation_type=IsolationType.BASIC))
sb.start()
sb.run_cell("1")
print("READY", *sb.worker_pids, flush=True)
if sys.argv[1] == "hang":
    sb.run_cell("import time\nwhile True:\n    time.sleep(1)")
sb.close()
"""


def _host(mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOST, mode], stdout=subprocess.PIPE, text=True)


def test_cgroups_of_a_sigkilled_host_are_swept_by_the_next_one() -> None:
    host = _host("hang")
    try:
        assert host.stdout is not None
        line = host.stdout.readline().split()
        assert line[:1] == ["READY"], line
        worker = int(line[1])
        dirs = _sandbox_cgroup_dirs(worker)
        assert dirs and all(f"-h{host.pid}." in d for d in dirs), dirs
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    deadline = time.monotonic() + 20
    while psutil.pid_exists(worker) and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker dies with its host (the template's death signal)
    assert [d for d in dirs if os.path.exists(d)] == dirs, "precondition: a SIGKILLed host cannot remove its cgroup"
    nxt = _host("close")
    out, _ = nxt.communicate(timeout=90)
    assert nxt.returncode == 0 and out.startswith("READY"), out
    left = [d for d in dirs if os.path.exists(d)]
    assert not left, f"the cgroup of a SIGKILLed host outlived the next host's start: {left}"
