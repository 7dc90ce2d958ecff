"""The shared mechanisms of issue 9: one seccomp policy, procfs, one cgroup interface,
one warm pool, one reaper.

The seccomp test runs the real BPF program through an interpreter of the
classic-BPF subset it uses and compares what it denies with what the OCI
profile denies; the kernel-level behaviour of the program is tested in
test_confinement.py and test_escape.py. procfs and cgroups are read from
real processes; the pool and the reaper run real threads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from glsandbox_kernel import linux, procfs
from glsandbox_kernel.backends.pool import PoolGroup, PoolPolicy, WarmPool
from glsandbox_kernel.backends.reaper import Reaper
from glsandbox_kernel.config import create_config_by_level
from glsandbox_kernel.confinement import cgroups
from glsandbox_kernel.confinement import seccomp as sc

from ..conftest import wait_gone

LINUX = sys.platform.startswith("linux")

# ---------------------------------------------------------------------------
# seccomp: one policy, two programs, the same denials


def run_bpf(prog: list[tuple[int, int, int, int]], nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Interpret ``prog`` over one ``struct seccomp_data``; returns the action."""
    full = (*args, *([0] * (6 - len(args))))
    data = struct.pack("=iIQ6Q", nr, arch, 0, *full)
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == sc.BPF_LD_W_ABS:
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == sc.BPF_RET_K:
            return k
        elif code == sc.BPF_ALU_AND_K:
            acc &= k
            pc += 1
        else:
            hit = {
                sc.BPF_JMP_JEQ_K: acc == k,
                sc.BPF_JMP_JGE_K: acc >= k,
                sc.BPF_JMP_JSET_K: bool(acc & k),
            }[code]
            pc += 1 + (jt if hit else jf)


def oci_unconditional(profile: dict) -> dict[str, int]:
    """Syscall name -> errno of the OCI profile's rules without argument conditions."""
    out: dict[str, int] = {}
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ERRNO" and not rule.get("args"):
            for name in rule["names"]:
                out[name] = rule["errnoRet"]
    return out


@pytest.mark.parametrize("arch", sorted(linux.SYSCALLS))
@pytest.mark.parametrize("deny_inet", [False, True])
def test_bpf_program_and_oci_profile_deny_the_same_syscalls(arch: str, deny_inet: bool) -> None:
    # deny_inet goes with deny_unix: both are BASIC's (no network or mount namespace)
    policy = sc.SeccompPolicy(arch=arch, notify=False, deny_inet=deny_inet, deny_unix=deny_inet, cap_buffers=deny_inet)
    prog = policy.bpf()
    table = linux.SYSCALLS[arch]
    audit = sc.AUDIT_ARCH[arch]
    bpf = {}
    for name, nr in table.items():
        action = run_bpf(prog, nr, audit)
        if action != sc.SECCOMP_RET_ALLOW:
            assert action & 0xFFFF0000 == sc.SECCOMP_RET_ERRNO, name
            bpf[name] = action & 0xFFFF
    profile = policy.oci_profile()
    oci = oci_unconditional(profile)
    # fallocate is denied by its mode in both: the interpreter's mode 0 allocates (EOPNOTSUPP), a punch hole frees
    (falloc,) = [r for r in profile["syscalls"] if r["names"] == ["fallocate"]]
    assert falloc["errnoRet"] == errno.EOPNOTSUPP and falloc["args"][0]["index"] == 1
    oci["fallocate"] = errno.EOPNOTSUPP
    assert run_bpf(prog, table["fallocate"], audit, (3, 0x02 | 0x01)) == sc.SECCOMP_RET_ALLOW  # PUNCH_HOLE|KEEP_SIZE
    assert bpf == {n: e for n, e in oci.items() if n in table}
    other_arches = set().union(*linux.SYSCALLS.values()) - set(table)  # names that do not exist here
    assert set(oci) - set(table) <= set(sc.COMPAT_ONLY) | other_arches
    assert bpf["clone3"] == errno.ENOSYS and bpf["ptrace"] == errno.EPERM
    assert set(policy.denied_names()) == {n for n, e in bpf.items() if e == errno.EPERM}

    # The argument rules: clone with any namespace flag or CLONE_PARENT, the terminal ioctls,
    # (BASIC) inet and Unix sockets, vsock everywhere.
    cond = [r for r in policy.oci_profile()["syscalls"] if r.get("args")]
    for flag in linux.CLONE_FLAG_NAMES:
        assert run_bpf(prog, table["clone"], audit, (flag,)) != sc.SECCOMP_RET_ALLOW
        assert any(r["names"] == ["clone"] and r["args"][0]["value"] == flag for r in cond)
    assert run_bpf(prog, table["clone"], audit, (0x11,)) == sc.SECCOMP_RET_ALLOW  # SIGCHLD: a plain fork
    for req in (linux.TIOCSTI, linux.TIOCLINUX):
        assert run_bpf(prog, table["ioctl"], audit, (0, req)) != sc.SECCOMP_RET_ALLOW
        assert any(r["names"] == ["ioctl"] and r["args"][0]["value"] == req for r in cond)
    for fam in linux.INET_FAMILIES:
        denied = run_bpf(prog, table["socket"], audit, (fam,)) != sc.SECCOMP_RET_ALLOW
        in_oci = any(r["names"] == ["socket"] and r["args"][0]["value"] == fam for r in cond)
        assert denied == in_oci == deny_inet
    for fam, want in ((linux.AF_UNIX, deny_inet), (linux.AF_VSOCK, True), (linux.AF_NETLINK, False)):
        denied = run_bpf(prog, table["socket"], audit, (fam,)) != sc.SECCOMP_RET_ALLOW
        in_oci = any(r["names"] == ["socket"] and r["args"][0]["value"] == fam for r in cond)
        assert denied == in_oci == want, fam
    assert linux.CLONE_PARENT in linux.CLONE_FLAG_NAMES
    # BASIC shares the host's IPC and filesystem: its SysV IPC, mq, memfd, inotify and datagram socketpairs
    for name in sc.HOST_SHARED:
        if name in table:
            assert (run_bpf(prog, table[name], audit) != sc.SECCOMP_RET_ALLOW) == deny_inet, name
    for sock_type, want in ((2, deny_inet), (2 | 0x80000, deny_inet), (1, False), (5, False)):  # DGRAM, STREAM
        got = run_bpf(prog, table["socketpair"], audit, (linux.AF_UNIX, sock_type)) != sc.SECCOMP_RET_ALLOW
        assert got == want, sock_type
    # without a cgroup (cap_buffers) a socket's buffer sizes stay the kernel's default (setsockopt: 0, nothing done)
    for level, opt, capped in ((1, 7, True), (1, 8, True), (1, 32, True), (1, 33, True), (1, 2, False), (6, 7, False)):
        got = run_bpf(prog, table["setsockopt"], audit, (3, level, opt))
        assert got == (sc.SECCOMP_RET_ERRNO if capped and deny_inet else sc.SECCOMP_RET_ALLOW), (level, opt)
    # clearing the worker's subreaper flag (orphans would leave the tree) is denied everywhere
    assert run_bpf(prog, table["prctl"], audit, (linux.PR_SET_CHILD_SUBREAPER, 0)) != sc.SECCOMP_RET_ALLOW
    assert run_bpf(prog, table["prctl"], audit, (linux.PR_SET_PDEATHSIG, 9)) == sc.SECCOMP_RET_ALLOW
    # Another architecture is killed outright by the BPF program.
    assert run_bpf(prog, table["getpid"] if "getpid" in table else 39, 0x40000003) == sc.SECCOMP_RET_KILL_PROCESS


@pytest.mark.parametrize("arch", sorted(linux.SYSCALLS))
@pytest.mark.parametrize("own_pid_only", [False, True])
def test_calls_on_another_process_only_on_pid_0_without_a_pid_namespace(arch: str, own_pid_only: bool) -> None:
    """BASIC shares the host's pids: prlimit64, setpriority, the scheduler calls, ... on any pid but
    0 (self), and setpriority/ioprio_set on a process group or user, go to the supervisor (recorded,
    denied); with a pid namespace every pid the sandbox names is its own and they stay allowed."""
    from glsandbox_kernel.confinement.seccomp_args import OWN_PID_ONLY

    policy = sc.SeccompPolicy(arch=arch, notify=True, own_pid_only=own_pid_only)
    prog, table, audit = policy.bpf(), linux.SYSCALLS[arch], sc.AUDIT_ARCH[arch]
    cond = [r for r in policy.oci_profile()["syscalls"] if r.get("args")]
    for name, checks in OWN_PID_ONLY.items():
        nr = table[name]
        allowed = [0] * 6
        for arg, value in checks:
            allowed[arg] = value
        assert run_bpf(prog, nr, audit, (*allowed[:2], 0x7FFF0000, 19)) == sc.SECCOMP_RET_ALLOW, name
        for arg, value in checks:
            for other in (value + 1, 4321, 0xFFFFFFFF):  # PRIO_PGRP/PRIO_USER, a pid, -1
                args = list(allowed)
                args[arg] = other
                want = sc.SECCOMP_RET_USER_NOTIF if own_pid_only else sc.SECCOMP_RET_ALLOW
                assert run_bpf(prog, nr, audit, tuple(args)) == want, (name, arg, other)
            rule = [r for r in cond if r["names"] == [name] and r["args"][0]["index"] == arg]
            want_rule = [{"index": arg, "value": value, "op": "SCMP_CMP_NE"}] if own_pid_only else []
            assert [r["args"][0] for r in rule] == want_rule, (name, arg)
    # without the supervisor, plain EPERM; the calls whatever their pid are not in the deny lists
    quiet = sc.SeccompPolicy(arch=arch, notify=False, own_pid_only=own_pid_only).bpf()
    want = sc.SECCOMP_RET_ERRNO | errno.EPERM if own_pid_only else sc.SECCOMP_RET_ALLOW
    assert run_bpf(quiet, table["prlimit64"], audit, (4321, 7)) == want
    assert not set(OWN_PID_ONLY) & set(policy.denied_names())


@pytest.mark.parametrize("arch", sorted(linux.SYSCALLS))
@pytest.mark.parametrize("keep_sigchld", [False, True])
def test_sigchld_disposition_is_kept_where_only_proc_measures_cpu(arch: str, keep_sigchld: bool) -> None:
    """Without a cgroup a child the kernel reaps (SIGCHLD ignored, SA_NOCLDWAIT) takes its CPU
    with it: rt_sigaction(SIGCHLD, act) is denied (EPERM, silent), a query and other signals are not."""
    policy = sc.SeccompPolicy(arch=arch, notify=True, keep_sigchld=keep_sigchld)
    prog, nr, audit = policy.bpf(), linux.SYSCALLS[arch]["rt_sigaction"], sc.AUDIT_ARCH[arch]
    denied = sc.SECCOMP_RET_ERRNO | errno.EPERM if keep_sigchld else sc.SECCOMP_RET_ALLOW
    for act in (0x7FFC1234, 1 << 32, 0xFFFF7FFC12340000):  # either half of the pointer set
        assert run_bpf(prog, nr, audit, (signal.SIGCHLD, act, 0, 8)) == denied, hex(act)
    assert run_bpf(prog, nr, audit, (signal.SIGCHLD, 0, 0x7FFC1234, 8)) == sc.SECCOMP_RET_ALLOW  # a query
    assert run_bpf(prog, nr, audit, (signal.SIGINT, 0x7FFC1234, 0, 8)) == sc.SECCOMP_RET_ALLOW
    cond = [r for r in policy.oci_profile()["syscalls"] if r["names"] == ["rt_sigaction"]]
    want = [[{"index": 0, "value": 17, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 0, "op": "SCMP_CMP_NE"}]]
    assert [r["args"] for r in cond] == (want if keep_sigchld else [])


def test_one_escape_list_and_one_deny_list() -> None:
    assert not set(sc.ESCAPE) & set(sc.DENY)
    for arch, table in linux.SYSCALLS.items():
        # every name we deny is known on x86_64 (the superset); a name missing on aarch64 does not exist there
        if arch == "x86_64":
            assert set(sc.ESCAPE) | set(sc.DENY) <= set(table)
    # What the container backend denied before and the BPF filter did not: now in one of the lists.
    for name in ("kcmp", "adjtimex", "name_to_handle_at", "lookup_dcookie", "quotactl", "syslog", "uselib"):
        assert name in sc.ESCAPE or name in sc.DENY


def test_runsc_profile_leaves_clone3_to_the_sentry() -> None:
    policy = sc.SeccompPolicy.for_config(create_config_by_level("strict"), notify=False)
    assert "clone3" in oci_unconditional(policy.oci_profile())
    assert "clone3" not in oci_unconditional(policy.oci_profile(runtime=sc.RUNSC))
    assert policy.deny_exec and not policy.notify


@pytest.mark.parametrize("arch", sorted(linux.SYSCALLS))
def test_exec_rules_are_the_only_bpf_extra_at_strict(arch: str) -> None:
    plain = sc.SeccompPolicy(arch=arch, notify=False)
    strict = sc.SeccompPolicy(arch=arch, notify=False, deny_exec=True)
    audit = sc.AUDIT_ARCH[arch]
    extra = {
        n
        for n, nr in linux.SYSCALLS[arch].items()
        if run_bpf(strict.bpf(), nr, audit) != run_bpf(plain.bpf(), nr, audit)
    }
    assert extra == {"execve", "execveat"}
    assert strict.oci_profile() == plain.oci_profile()  # the container backends enforce STRICT by noexec mounts


# ---------------------------------------------------------------------------
# procfs, against real processes


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_procfs_reads_a_real_process_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import subprocess,sys,time; p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(30)']); print(p.pid, flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        st = procfs.stat(child.pid)
        assert st is not None and st.ppid == os.getpid() and st.alive
        assert st.rss_bytes > 1 << 20 and st.cpu_seconds >= 0
        assert procfs.parent_pid(grandchild) == child.pid
        assert procfs.children_of(child.pid) == [grandchild]
        assert grandchild in procfs.descendants(os.getpid())
        assert procfs.start_time(child.pid) == st.start_ticks
        hwm = procfs.vm_hwm(child.pid)
        assert hwm is not None and hwm >= st.rss_bytes // 2
        assert procfs.ns_pids(child.pid)[0] == child.pid
        assert procfs.ns_link(child.pid, "pid") == procfs.ns_link("self", "pid")
        reader = procfs.ProcessReader(child.pid)
        reading = reader.read()
        assert reading is not None and reading[0].ppid == os.getpid()
        child.kill()
        child.wait()
        assert reader.read() is None  # gone: None, never zeros
        reader.close()
        assert procfs.stat(child.pid) is None and procfs.cpu_rss(child.pid) is None
    finally:
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.kill(grandchild, signal.SIGKILL)
        child.kill()
        child.wait()
    assert wait_gone([grandchild]) == []


def test_procfs_parses_a_command_name_with_parentheses() -> None:
    fields = ["S", "1"] + ["0"] * 9 + ["5", "6", "7", "8"] + ["0"] * 4 + ["4242", "0", "3"]
    st = procfs.parse_stat(b"17 (a) b) (c) " + " ".join(fields).encode())
    assert st is not None and st.state == "S" and st.ppid == 1
    assert st.cpu_ticks == 26 and st.start_ticks == 4242 and st.rss_pages == 3
    assert procfs.parse_stat(b"garbage") is None


# ---------------------------------------------------------------------------
# cgroups: read-only view of a cgroup we did not make


@pytest.mark.skipif(not LINUX, reason="needs cgroups")
def test_from_pid_is_a_read_only_view() -> None:
    cg = cgroups.from_pid(os.getpid())
    if cg is None:
        pytest.skip("this process's cgroup has no memory controller to read")
    try:
        assert not cg.owned
        reading = cg.sample()
        assert reading is not None and reading["memory_current"] > 0
        assert os.getpid() in cg.procs()
        cg.reset_peak()  # allowed on a view (a container's peak window)
        for refused in (cg.remove, cg.kill_all, lambda: cg.attach([os.getpid()]), lambda: cg.rename("x")):
            with pytest.raises(cgroups.base.ConfinementError, match="read-only"):
                refused()
        assert os.getpid() in cg.procs()  # nothing was killed
    finally:
        cg.close()
    assert cgroups.from_pid(2**22 + 12345) is None  # no such process


# ---------------------------------------------------------------------------
# the generic warm pool and the reaper


class FakeWorker:
    """A real child process as a pool worker."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        self.cleaned = False

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def cleanup(self) -> None:
        self.cleaned = True

    def host_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc.poll() is None else []


def test_pool_fills_in_parallel_hands_out_once_and_drains() -> None:
    started: list[FakeWorker] = []
    lock = threading.Lock()
    gate = threading.Barrier(3, timeout=10)

    def launcher() -> FakeWorker:
        gate.wait()  # three fills must run at once to pass
        w = FakeWorker()
        with lock:
            started.append(w)
        return w

    policy = PoolPolicy(env_var="GLSANDBOX_TEST_POOL_UNSET", default_size=3, maximum=4, parallel=3, label="t")
    group: PoolGroup[FakeWorker] = PoolGroup(policy)
    pool = group.get("k", launcher)
    pool.refill()
    assert pool.wait_ready(3, timeout=20)
    assert group.pooled_pids() == {w.proc.pid for w in started}
    w = pool.take()
    assert w is not None and w.poll() is None and w.proc.pid not in group.pooled_pids()
    w.kill()
    group.drain_all()
    assert group.pools() == []
    assert all(x.poll() is not None and x.cleaned for x in started if x is not w)


def test_pool_backs_off_and_gives_up_after_failures() -> None:
    calls: list[float] = []

    def launcher() -> FakeWorker:
        calls.append(time.monotonic())
        raise OSError("cannot start")

    policy = PoolPolicy(env_var="GLSANDBOX_TEST_POOL_UNSET", default_size=1, max_failures=3, backoff=0.05, label="t")
    pool: WarmPool[FakeWorker] = WarmPool("k", launcher, policy)
    pool.refill()
    assert pool.settle(10)
    assert len(calls) == 3 and isinstance(pool.last_error, OSError)
    # the backoff grows with the failure count (sleep sleeps at least that long)
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.10
    assert pool.take() is None


def test_pool_stops_at_once_when_the_backend_cannot_run_the_config() -> None:
    """A BackendUnavailableError is permanent for that config: no retries, no backoff sleeps."""
    from glsandbox_kernel.exceptions import BackendUnavailableError

    calls: list[float] = []

    def launcher() -> FakeWorker:
        calls.append(time.monotonic())
        raise BackendUnavailableError("t", "cannot enforce this config")

    policy = PoolPolicy(env_var="GLSANDBOX_TEST_POOL_UNSET", default_size=2, max_failures=3, backoff=0.05, label="t")
    pool: WarmPool[FakeWorker] = WarmPool("k", launcher, policy)
    pool.refill()
    assert pool.settle(10)
    assert isinstance(pool.last_error, BackendUnavailableError)
    assert len(calls) <= 2, "each filler gives up after its first permanent failure"


def test_pool_group_keeps_at_most_max_keys_and_honours_size_override() -> None:
    policy = PoolPolicy(env_var="GLSANDBOX_TEST_POOL_UNSET", default_size=1, max_keys=2, label="t")
    group: PoolGroup[FakeWorker] = PoolGroup(policy)
    first = group.get("a", FakeWorker)
    group.get("b", FakeWorker)
    group.get("c", FakeWorker)
    assert [p.key for p in group.pools()] == ["b", "c"]
    deadline = time.monotonic() + 5
    while not first.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.closed  # evicted and drained
    group.set_size(0)
    assert group.size() == 0 and group.pools() == []
    group.set_size(None)
    assert group.size() == 1


def test_pool_size_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = PoolPolicy(env_var="GLSANDBOX_TEST_POOL", default_size=2, maximum=5)
    monkeypatch.setenv("GLSANDBOX_TEST_POOL", "9")
    assert policy.size() == 5
    monkeypatch.setenv("GLSANDBOX_TEST_POOL", "0")
    assert policy.size() == 0
    monkeypatch.setenv("GLSANDBOX_TEST_POOL", "many")
    assert policy.size() == 2


def test_reaper_runs_jobs_in_order_survives_failures_and_flushes() -> None:
    r = Reaper("glsandbox-test-reaper", idle_exit=0.2)
    done: list[int] = []
    release = threading.Event()
    r.submit(lambda: release.wait(10), key="slow")

    def boom() -> None:
        raise RuntimeError("one failed removal")

    r.submit(boom)
    for i in range(5):
        r.submit(lambda i=i: done.append(i), key=f"job{i}")
    assert "slow" in r.pending()
    assert not r.flush(0.05)
    release.set()
    assert r.flush(10)
    assert done == [0, 1, 2, 3, 4] and r.pending() == set()
    time.sleep(0.5)  # the idle thread ends; a new job starts a new one
    r.submit(lambda: done.append(5))
    assert r.flush(10) and done[-1] == 5


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_scratch_sweep_never_unmounts_through_a_planted_symlink(tmp_path: Path) -> None:
    """A name like a dead host's sized folder, planted as a symlink to a mount, is left alone."""
    import ctypes
    import tempfile

    from glsandbox_kernel import hosttemp

    target = tmp_path / "mounted"
    target.mkdir()
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", 0, b"size=1m") == 0
    ns = os.stat("/proc/self/ns/pid").st_ino  # a dead creator of our pid namespace: swept
    link = os.path.join(tempfile.gettempdir(), f"glsandbox-q999999.1.{ns}-planted")
    try:
        os.symlink(str(target), link)
        hosttemp.sweep()
        with open("/proc/self/mountinfo") as fh:
            assert any(line.split()[4] == str(target) for line in fh), "the sweep unmounted through a symlink"
    finally:
        if os.path.islink(link):
            os.unlink(link)
        libc.umount2(str(target).encode(), 2)


@pytest.mark.parametrize("arch", sorted(linux.SYSCALLS))
@pytest.mark.parametrize("own_pid_only", [False, True])
def test_basic_changes_no_inode_through_a_descriptor(arch: str, own_pid_only: bool) -> None:
    """BASIC keeps the host's uid: mode, owner, times and xattrs by path *and* by fd are a no-op (errno 0),
    the owner-only inode ioctls (chattr, verity) and F_SETLEASE get EPERM; other ioctls and fcntls stay."""
    from glsandbox_kernel.confinement.seccomp_args import ATTRIBUTE_CALLS

    policy = sc.SeccompPolicy(arch=arch, notify=True, own_pid_only=own_pid_only)
    prog, table, audit = policy.bpf(), linux.SYSCALLS[arch], sc.AUDIT_ARCH[arch]
    allow, eperm = sc.SECCOMP_RET_ALLOW, sc.SECCOMP_RET_ERRNO | errno.EPERM
    oci = oci_unconditional(policy.oci_profile())
    for name in ("fchmod", "fchown", "fsetxattr", "fremovexattr", "utimensat", "chmod"):
        if name in table:
            assert name in ATTRIBUTE_CALLS
            got = run_bpf(prog, table[name], audit, (3, 0, 0, 0))  # utimensat(fd, NULL, ...): the fd form
            assert got == (sc.SECCOMP_RET_ERRNO if own_pid_only else allow), name
            assert (oci.get(name) == 0) == own_pid_only, name
    cond = [r for r in policy.oci_profile()["syscalls"] if r.get("args")]
    for req in linux.INODE_IOCTLS:
        for cmd in (req, req | 0xFFFFFFFF00000000):  # the kernel reads an unsigned int
            assert run_bpf(prog, table["ioctl"], audit, (3, cmd)) == (eperm if own_pid_only else allow), hex(cmd)
        assert any(r["names"] == ["ioctl"] and r["args"][0]["value"] == req for r in cond) == own_pid_only
    assert run_bpf(prog, table["ioctl"], audit, (0, linux.TIOCSTI)) == sc.SECCOMP_RET_USER_NOTIF
    assert run_bpf(prog, table["ioctl"], audit, (3, 0x541B)) == allow  # FIONREAD
    assert run_bpf(prog, table["fcntl"], audit, (3, linux.F_SETLEASE, 0)) == (eperm if own_pid_only else allow)
    assert any(r["names"] == ["fcntl"] and r["args"][0]["value"] == linux.F_SETLEASE for r in cond) == own_pid_only
    for cmd in (1, 2, 3, 4, 6, 7, 1030, 37, 38):  # F_GETFD..F_SETLKW, F_DUPFD_CLOEXEC, OFD locks
        assert run_bpf(prog, table["fcntl"], audit, (3, cmd, 0)) == allow, cmd
