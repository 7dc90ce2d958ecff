"""Outside review (7th): the cgroup sweep kills the live sandboxes of a host in another pid namespace.

Attack / plain use: an owned cgroup is named ``glsandbox-<name>-h<creator pid>``
and the first cgroup a host process makes sweeps every such folder whose
creator "is gone" (``os.kill(pid, 0)`` -> ESRCH) by SIGKILLing what is in it
and removing it (``confinement/cgroups/sweep.py``). A pid means nothing
outside its pid namespace: a glsandbox host running in a container, a
``unshare -p``/bubblewrap/firejail/systemd-nspawn session, or any pid
namespace that shares the cgroup hierarchy (``--cgroupns=host``, a
privileged container) names its cgroups with pids the other side cannot
see. So any glsandbox process starting on one side kills every running
sandbox of the other side and deletes its cgroups (its limits and its
trusted figures go with them), and the victim records a crash.

Measured here (root, cgroup v1, BASIC): a host in a new pid namespace (its
pid 30000, free in the root namespace) ran a 20 s cell; a fresh host in the
root namespace started one BASIC sandbox; the first host's cell ended with
``SandboxCrashedError: the sandbox worker died during the call (signal
SIGKILL)``, and all its ``glsandbox-*-h30000`` cgroups (session and warm
pool) were gone. The reverse direction works the same way.

Judged from the host: the first host's cell ends ``ok`` and its cgroups
still exist after the second host's sweep.

Fix (suggested): put the creator's pid namespace (``/proc/self/ns/pid``
inode) and start time (``/proc/self/stat`` field 22) in the name, and sweep
only names of one's own pid namespace whose pid is gone *or* has another
start time (this also stops a reused pid from keeping a dead host's cgroup,
and what is left in it, alive forever); or hold a lock per creator (an
``flock`` on a file under ``/run/glsandbox``) that the sweep tests instead of the pid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import ROOT
from .test_outside5_common import need

pytestmark = pytest.mark.timeout(300)

#: a host in its own pid namespace: a BASIC sandbox, one cell that sleeps, then a clean exit
HOST_B = """
import os, sys
from glsandbox_kernel import OSSandbox, create_config_by_level, SecurityLevel, IsolationType
cfg = create_config_by_level(SecurityLevel.MODERATE).replace(isolation_type=IsolationType.BASIC, execution_timeout=None)
with OSSandbox(cfg) as sb:
    sb.execute(int, 1)
    print("STARTED", os.getpid(), flush=True)
    res = sb.run_cell("import time\\ntime.sleep(20)\\nprint('slept')")
    print("CELL", res.status, res.error_name, res.error_value, flush=True)
"""

#: a plain host in the root pid namespace: its first cgroup runs the sweep
HOST_A = """
from glsandbox_kernel import OSSandbox, create_config_by_level, SecurityLevel, IsolationType
cfg = create_config_by_level(SecurityLevel.MODERATE).replace(isolation_type=IsolationType.BASIC)
with OSSandbox(cfg) as sb:
    print("A", sb.execute(int, 42), flush=True)
"""


def _free_pid() -> int:
    for pid in range(30000, 32000):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
    pytest.skip("no free pid between 30000 and 32000")


def _cgroups_of(pid: int) -> list[str]:
    out = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        # the creator token (pid.start.pidns) of today's names, or the bare pid of older versions
        out += [str(p) for pat in (f"glsandbox-*-h{pid}", f"glsandbox-*-h{pid}.*") for p in hierarchy.glob(pat)]
    return sorted(out)


def test_a_sweep_does_not_kill_the_sandboxes_of_a_host_in_another_pid_namespace() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and util-linux unshare")
    need("basic")
    pid = _free_pid()
    env = {**os.environ, "PYTHONPATH": ROOT}
    # sh is pid 1 of the new namespace; the python it forks (not execs: "; exit") gets ``pid``
    script = f'echo {pid - 1} > /proc/sys/kernel/ns_last_pid && "$@"; exit $?'
    host_b = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", script, "sh", sys.executable, "-c", HOST_B],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert host_b.stdout is not None
        line = host_b.stdout.readline()
        assert line.startswith("STARTED"), line + host_b.stdout.read()
        assert int(line.split()[1]) == pid, line
        before = _cgroups_of(pid)
        assert before, f"host B (pid {pid} in its namespace) made no cgroup glsandbox-*-h{pid}"
        time.sleep(1)  # host B's cell is running
        res = subprocess.run([sys.executable, "-c", HOST_A], capture_output=True, text=True, env=env, timeout=120)
        assert "A 42" in res.stdout, res.stdout + res.stderr
        after = _cgroups_of(pid)
        rest = host_b.communicate(timeout=120)[0]
    finally:
        if host_b.poll() is None:
            os.killpg(host_b.pid, 9)
            host_b.wait()
    assert after == before and "CELL ok" in rest, (
        f"a host in the root pid namespace swept the cgroups of a live host in another pid namespace: "
        f"{len(before)} cgroups before, {len(after)} after; host B's cell: {rest.strip()!r}"
    )
