"""Outside review 25b: rootless, children reaped by ``SIGCHLD = SIG_IGN`` burn CPU the host never counts.

Severity: medium-high (the CPU time limit and the recorded ``cpu_time_used`` of every sandbox
measured through /proc: NAMESPACE without a delegated cgroup, i.e. any unprivileged host on cgroup
v1 or without systemd delegation, and unprivileged BASIC; every level).

Review 3 found ``RLIMIT_CPU`` per process; the fix measures the *tree* from outside. Without a cgroup
the tree's figure is ``utime + stime + cutime + cstime`` of the processes alive at each sample
(``procfs.tree_cpu_rss``). A child's CPU time reaches its parent's ``cutime`` only when the parent
*waits* for it; with ``SIGCHLD`` set to ``SIG_IGN`` the kernel reaps children itself (no wait) and their
CPU time is added nowhere.

Attack: STRICT with ``cpu_time_limit_seconds=2``; the function sets ``SIGCHLD`` to ``SIG_IGN`` and forks
six children one after another, each burning 1.5 s of CPU (under the limit while it lives, and under
``RLIMIT_CPU``) and exiting.

What the host saw (uid 65534; measured): NAMESPACE ``cpu_time_used 0.01`` (``measured_by
procfs-tree``), BASIC ``0.01`` (``procfs``), status ``execution_success``, no limit hit, while the
sandbox used 9 s of CPU (4.5x its limit; the number of children has no bound but the wall-clock
timeout). The same cell as root (cgroup v1 cpuacct) is stopped at 2.01 s: held.

Judged here from a cpuacct cgroup of the test's own around the unprivileged host script: the CPU
the sandbox used (the cgroup's, less nothing: the host's own is small) is not more than twice the
limit unless the call failed on the CPU limit.

Fix direction: without a cgroup, keep per-pid accounting in the outside monitor (the last reading of
each pid seen, summed for gone pids: a sample every 0.25 s loses at most that much per child), or
refuse ``cpu_time_limit_seconds`` / mark ``cpu_time_used`` None when only /proc measures it. Seccomp
cannot tell ``SIG_IGN``/``SA_NOCLDWAIT`` (they are in the ``struct sigaction`` in memory), and a
subreaper does not help (the worker's own children are reaped by the worker), so the accounting has
to change.

Fixed otherwise (branch seccompfix): per-pid sampling still misses every child shorter than a
sample, so where only /proc measures CPU the filter denies ``rt_sigaction(SIGCHLD, act)`` outright
(EPERM; queries stay), which no struct has to be read for; the worker starts at SIG_DFL and is the
subreaper of orphans. :func:`test_rootless_sigchld_stays_default_and_shells_still_run` checks the
rule and what it costs.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import subprocess
import sys

import pytest

from ..conftest import ROOT, as_user
from .test_outside13_common import nobody_env, nobody_tmp, run_as_nobody

pytestmark = pytest.mark.timeout(300)

LIMIT = 2.0

HOST = r"""
import dataclasses, json, sys
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level


def burn(n, each):
    # SANDBOX side: children reaped by the kernel, one at a time, each under the limit.
    import os, signal, time

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for _ in range(n):
        r, w = os.pipe()
        if os.fork() == 0:
            t = time.process_time()
            while time.process_time() - t < each:
                pass
            os._exit(0)
        os.close(w)
        os.read(r, 1)  # end of file: the child exited
        os.close(r)
    return n * each


cfg = create_config_by_level("strict", isolation_type=IsolationType(sys.argv[1]), execution_timeout=120)
cfg = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, cpu_time_limit_seconds=float(sys.argv[2])))
with OSSandbox(cfg) as sandbox:
    try:
        sandbox.execute(burn, 6, 1.5)
        status = "ok"
    except Exception as exc:  # noqa: BLE001 - the host's verdict is the result
        status = f"{type(exc).__name__}: {exc}"
    m = sandbox.metrics
    print("RESULT " + json.dumps({"status": status, "cpu_time_used": m.cpu_time_used, "by": m.measured_by}))
"""


def _cgroup() -> tuple[str, str]:
    """A CPU accounting cgroup of this test's own (v1 cpuacct or v2), and the file to read."""
    name = f"r25b-cpu-{os.getpid()}-{secrets.token_hex(3)}"
    if os.path.isfile("/sys/fs/cgroup/cpuacct/cpuacct.usage"):
        path = f"/sys/fs/cgroup/cpuacct/{name}"
        os.mkdir(path)
        return path, "cpuacct.usage"
    if os.path.isfile("/sys/fs/cgroup/cgroup.controllers"):
        path = f"/sys/fs/cgroup/{name}"
        os.mkdir(path)
        return path, "cpu.stat"
    pytest.skip("no cgroup CPU accounting here")


def _used(path: str, name: str) -> float:
    text = open(os.path.join(path, name)).read()
    if name == "cpuacct.usage":
        return int(text) / 1e9
    return int(dict(line.split() for line in text.splitlines())["usage_usec"]) / 1e6


@pytest.mark.parametrize("isolation", ["namespace", "basic"])
def test_rootless_cpu_limit_counts_children_the_kernel_reaped(isolation: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for the test's own accounting cgroup and to switch to uid 65534")
    path, name = _cgroup()
    try:
        with nobody_tmp("glsandbox-r25b-") as tmp:
            env = nobody_env(tmp)
            argv = as_user([sys.executable, "-c", HOST, isolation, str(LIMIT)])
            enter = f'echo $$ > {path}/cgroup.procs && exec "$@"'
            proc = subprocess.run(
                ["sh", "-c", enter, "sh", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=280
            )
        used = _used(path, name)
    finally:
        try:
            os.rmdir(path)
        except OSError:
            pass
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(lines[0][len("RESULT ") :])
    assert used <= 2 * LIMIT or "CPU time limit" in got["status"], (
        f"{isolation} (uid 65534): the sandbox tree used {used:.1f} s of CPU (the test's cgroup) under a "
        f"{LIMIT:g} s CPU time limit; the host said {got}"
    )


SHELLS = r"""
import json, sys
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level


def shells():
    # SANDBOX side: the worker starts with SIGCHLD at its default; shells, which install a SIGCHLD
    # handler at start (denied here), still run and wait for their commands.
    import ctypes, signal, subprocess

    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    bit = 1 << (signal.SIGCHLD - 1)
    out = {"ignored": bool(int(status["SigIgn"], 16) & bit), "caught": bool(int(status["SigCgt"], 16) & bit)}
    # (dash's `wait` builtin for a background job sleeps until a SIGCHLD handler it could not
    # install runs: a known limit, README; its foreground commands are waited for as usual)
    scripts = {"sh": "for i in 1 2 3; do true; done; sleep 0.1; (exit 3); echo waited $?",
               "bash": "for i in 1 2 3; do true; done; sleep 0.1 & wait $!; (exit 3); echo waited $?"}
    for shell, script in scripts.items():
        out[shell] = subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=20).stdout
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        out["sig_ign"] = "allowed"
    except OSError as exc:
        out["sig_ign"] = exc.errno

    class Sigaction(ctypes.Structure):  # the kernel's struct: handler, flags, restorer, mask
        _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong), ("restorer", ctypes.c_void_p),
                    ("mask", ctypes.c_uint64)]

    libc = ctypes.CDLL(None, use_errno=True)
    nocldwait = Sigaction(None, 0x2)  # SIG_DFL with SA_NOCLDWAIT
    rc = libc.syscall(13 if __import__("platform").machine() == "x86_64" else 134, 17, ctypes.byref(nocldwait), None, 8)
    out["sa_nocldwait"] = "allowed" if rc == 0 else ctypes.get_errno()
    old = Sigaction()
    rc = libc.syscall(13 if __import__("platform").machine() == "x86_64" else 134, 17, None, ctypes.byref(old), 8)
    out["query"] = rc
    return out


cfg = create_config_by_level("moderate", isolation_type=IsolationType(sys.argv[1]))
with OSSandbox(cfg) as sandbox:
    print("RESULT " + json.dumps(sandbox.execute(shells)))
"""


@pytest.mark.parametrize("isolation", ["namespace", "basic"])
def test_rootless_sigchld_stays_default_and_shells_still_run(isolation: str) -> None:
    """The fix: where only /proc measures CPU, SIGCHLD's disposition cannot be set (SIG_IGN nor
    SA_NOCLDWAIT, EPERM; a query still answers), the worker starts with it at SIG_DFL, and
    the shells that try to install a handler at start go on without it."""
    with nobody_tmp("glsandbox-r25b-") as tmp:
        proc = run_as_nobody(SHELLS, isolation, tmp=tmp)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(lines[0][len("RESULT ") :])
    assert got == {
        "ignored": False,
        "caught": False,
        "sh": "waited 3\n",
        "bash": "waited 3\n",
        "sig_ign": errno.EPERM,
        "sa_nocldwait": errno.EPERM,
        "query": 0,
    }, got
