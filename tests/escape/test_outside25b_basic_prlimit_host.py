"""Outside review 25b: an unprivileged BASIC sandbox sets the limits, priority and CPUs of host processes.

Severity: high (BASIC run without root, which is the default wherever unprivileged user
namespaces are off, e.g. Ubuntu 24.04's AppArmor default, and with ``fallback_to_basic``;
every level, STRICT included). The sandbox reaches every host process of the user: the
kernel or magic host itself, the Jupyter server, the user's shell and editor.

Attack: BASIC keeps the host's uid and has no pid namespace. Signals are scoped by Landlock
(``kill`` gets EPERM, tested earlier), but the other syscalls that act on another process of the
same uid are allowed by the seccomp filter and not scoped by Landlock: ``prlimit64(pid, ...)``,
``setpriority(PRIO_PROCESS, pid, ...)`` / ``setpriority(PRIO_USER, 0, ...)``,
``sched_setaffinity(pid, ...)`` (also ``sched_setscheduler``/``sched_setattr``,
``ioprio_set``, ``migrate_pages`` the same way). Pids need no ``/proc``: ``prlimit64(pid, r, NULL,
&old)`` succeeds exactly for the uid's processes, so a loop over the pid range lists them.

What the host saw (run as uid 65534, STRICT, BASIC): the sandboxed function set the host process's
own ``RLIMIT_NOFILE`` to 1 (the host's next ``open`` failed with EMFILE: "Too many open files"),
reniced it and a bystander process of the user to 19, pinned both to CPU 0; with
``prlimit64(pid, RLIMIT_CPU, {1, 1})`` a CPU-busy host process of the user was killed by SIGKILL
within a second (a kill past Landlock's signal scoping). The call's record says
``execution_success``, no violation. (As root BASIC's worker gets EPERM; NAMESPACE, CONTAINER, VM
have their own pid namespace and cannot name host pids.)

Expected: sandboxed code cannot change any property of a process outside its own tree: the
bystander's and the host's limits, nice value and CPU set are as they were.

Fix direction: BASIC's seccomp filter (``confinement/seccomp.py``): ``prlimit64``, ``setpriority``,
``sched_setaffinity``/``sched_setscheduler``/``sched_setparam``/``sched_setattr``, ``ioprio_set``,
``migrate_pages``, ``get_robust_list`` allowed only for pid 0 (self; ``setrlimit`` covers the
rest of the self case, and children inherit at fork), ``setpriority``/``ioprio_set`` with
``PRIO_USER``/``PRIO_PGRP`` (``IOPRIO_WHO_USER``/``PGRP``) denied. A filter argument check
cannot tell the worker's own children from host pids, so a child is limited through its own
calls, never by pid.
"""

from __future__ import annotations

import errno
import json

import pytest

from .test_outside13_common import nobody_tmp, run_as_nobody

pytestmark = pytest.mark.timeout(300)

HOST = r"""
import json, os, subprocess, sys
from glsandbox_kernel import IsolationType, OSSandbox, SandboxMode, create_config_by_level


def attack(targets):
    # SANDBOX side: act on host processes of the same uid, by pid.
    import ctypes, os

    libc = ctypes.CDLL(None, use_errno=True)

    class RL(ctypes.Structure):
        _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]

    out = {}
    for name, pid in targets.items():
        rc = libc.prlimit64(pid, 7, ctypes.byref(RL(64, 64)), None)  # RLIMIT_NOFILE
        out[name + " prlimit64"] = 0 if rc == 0 else ctypes.get_errno()
        for what, act in (("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19)),
                          ("sched_setaffinity", lambda: os.sched_setaffinity(pid, {0}))):
            try:
                act()
                out[name + " " + what] = 0
            except OSError as exc:
                out[name + " " + what] = exc.errno
    # the sandbox's own process (pid 0) may still change itself: Python's calls, libc's nice()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 200), hard))
    os.sched_setaffinity(0, os.sched_getaffinity(0))
    os.nice(1)
    out["self"] = [resource.getrlimit(resource.RLIMIT_NOFILE)[0], os.getpriority(os.PRIO_PROCESS, 0)]
    return out


def state(pid):
    limit = [line.split()[3:5] for line in open(f"/proc/{pid}/limits") if line.startswith("Max open files")][0]
    return {"nofile": limit, "nice": os.getpriority(os.PRIO_PROCESS, pid), "cpus": sorted(os.sched_getaffinity(pid))}


bystander = subprocess.Popen(["sleep", "300"])
try:
    before = {"host": state(os.getpid()), "bystander": state(bystander.pid)}
    # PERMISSIVE: every attempt is made (ENFORCING stops the call at the first one denied)
    cfg = create_config_by_level("strict", isolation_type=IsolationType.BASIC, sandbox_mode=SandboxMode.PERMISSIVE)
    with OSSandbox(cfg) as sandbox:
        said = sandbox.execute(attack, {"host": os.getpid(), "bystander": bystander.pid})
        recorded = sandbox.metrics.violations_detected
    after = {"host": state(os.getpid()), "bystander": state(bystander.pid)}
    got = {"uid": os.getuid(), "said": said, "before": before, "after": after, "recorded": recorded}
    print("RESULT " + json.dumps(got))
finally:
    bystander.kill()
"""


def test_basic_cannot_change_host_processes_of_its_uid() -> None:
    with nobody_tmp("glsandbox-r25b-") as tmp:
        proc = run_as_nobody(HOST, tmp=tmp)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(lines[0][len("RESULT ") :])
    assert got["uid"] == 65534, got
    assert got["after"] == got["before"], (
        "a STRICT BASIC sandbox (unprivileged host) changed host processes it has no business with: "
        f"before {got['before']}, after {got['after']}; the sandbox's syscalls returned {got['said']}"
    )
    said = got["said"]
    assert said.pop("self")[1] >= 1, said  # the sandbox reniced itself; its own rlimit and CPUs were set
    assert set(said.values()) == {errno.EPERM}, said
    assert got["recorded"] == len(said), got  # each denial is a violation the supervisor recorded
