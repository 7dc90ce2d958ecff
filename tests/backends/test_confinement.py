"""Confinement steps, each tested for real in a forked child (phase 1 of issue 3).

Style of bubblewrap's ``tests/test-seccomp.py``: the child applies a plan
built by :func:`build_child_plan`, runs a probe and reports what the kernel
answered (errno values, what it can see); the parent asserts on that and on
what the trusted side recorded (supervisor, cgroup, proxy). The whole file
also runs as uid 65534 (:func:`test_suite_as_unprivileged_user`).

Skips name the missing host feature.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import ipaddress
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from glsandbox_kernel.backends.basic import BasicBackend
from glsandbox_kernel.backends.chroot import ChrootBackend
from glsandbox_kernel.backends.namespace import NamespaceBackend
from glsandbox_kernel.config import (
    FilesystemConfig,
    IsolationType,
    MiB,
    NetworkConfig,
    OSSandboxConfig,
    ResourceLimits,
    SecurityLevel,
    create_config_by_level,
)
from glsandbox_kernel.confinement import ChildPlan, apply_child_plan
from glsandbox_kernel.confinement import build_child_plan as _build_child_plan
from glsandbox_kernel.confinement import cgroups as cg
from glsandbox_kernel.confinement import landlock as ll
from glsandbox_kernel.confinement import namespaces as ns
from glsandbox_kernel.confinement import network as net
from glsandbox_kernel.confinement import proxy as px
from glsandbox_kernel.confinement import seccomp as sc
from glsandbox_kernel.confinement._common import ConfinementError, lower_file_limit
from glsandbox_kernel.supervisor import Supervisor, SupervisorPolicy

from ..conftest import HostHello as _Hello
from ..conftest import rerun_as_unprivileged

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINUX = sys.platform.startswith("linux")
IS_ROOT = os.geteuid() == 0
INNER = os.environ.get("GLSANDBOX_TEST_UNPRIVILEGED") == "1"

pytestmark = pytest.mark.skipif(not LINUX, reason="confinement steps need Linux")

if LINUX:
    USERNS_OK, USERNS_WHY = ns.userns_available()
    CG_OK, CG_WHY = cg.available()
    LANDLOCK_ABI = ll.landlock_abi()
    SECCOMP_OK, SECCOMP_WHY = sc.supported()
    NOTIFY = sc.notify_supported()
else:  # pragma: no cover
    USERNS_OK, USERNS_WHY, CG_OK, CG_WHY = False, "not Linux", False, "not Linux"
    LANDLOCK_ABI, SECCOMP_OK, SECCOMP_WHY, NOTIFY = 0, False, "not Linux", False

needs_userns = pytest.mark.skipif(not USERNS_OK, reason=f"user namespaces unavailable: {USERNS_WHY}")
needs_seccomp = pytest.mark.skipif(not SECCOMP_OK, reason=f"seccomp unavailable: {SECCOMP_WHY}")
needs_notify = pytest.mark.skipif(not NOTIFY, reason="seccomp user notifications unavailable on this kernel")
needs_landlock = pytest.mark.skipif(LANDLOCK_ABI == 0, reason="kernel has no Landlock (landlock_create_ruleset ABI 0)")
needs_cgroups = pytest.mark.skipif(not CG_OK, reason=f"cgroups unavailable: {CG_WHY}")

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long


def raw_syscall(name: str, *args: int) -> int:
    """CHILD side (probe): the errno of ``syscall(name, *args)``, 0 on success."""
    nr = sc.syscall_number(name)
    assert nr is not None, name
    res = _LIBC.syscall(nr, *(ctypes.c_long(a) for a in args))
    return ctypes.get_errno() if res < 0 else 0


# ---------------------------------------------------------------------------
# the harness: fork, apply the plan, run a probe, report over a SEQPACKET pair


@dataclasses.dataclass
class Outcome:
    status: int | None
    result: Any
    report: dict[str, Any]
    violations: list[dict[str, Any]]
    listener_passed: bool
    error: str | None = None


PROFILES = {b.name: b.profile for b in (BasicBackend, NamespaceBackend, ChrootBackend)}


def build_child_plan(config: OSSandboxConfig, *, backend: str, **kw: Any) -> ChildPlan:
    """The plan of ``backend``'s profile (the confinement code itself never sees the name)."""
    return _build_child_plan(config, profile=PROFILES[backend], **kw)


def run_in_sandbox(
    plan: ChildPlan | dict[str, Any],
    probe: Callable[[], Any],
    *,
    policy: SupervisorPolicy | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[int, Any], None] | None = None,
    timeout: float = 30.0,
) -> Outcome:
    """HOST side of the test harness: fork a child that applies ``plan`` and runs ``probe``.

    The child sends the seccomp listener fd with its first message (like the
    worker's hello frame) and closes it; the parent runs a real Supervisor on it.
    """
    wire = plan.to_wire() if isinstance(plan, ChildPlan) else plan
    json.dumps(wire)  # the plan crosses as plain data
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with helper threads (3.12+)
        pid = os.fork()
    if pid == 0:  # ---- CHILD ----
        code = 0
        try:
            parent.close()
            try:
                res = apply_child_plan(wire)  # checked against the schema, as in the zygote
            except BaseException:  # noqa: BLE001 - report any setup failure
                child.send(json.dumps({"error": traceback.format_exc()}).encode())
                os._exit(70)
            socket.send_fds(child, [json.dumps({"report": res.report}).encode()], res.pass_fds)
            for fd in res.pass_fds:
                os.close(fd)
            lower_file_limit(res.file_limit)  # as the worker does after its hello
            try:
                out = {"result": probe()}
            except BaseException:  # noqa: BLE001 - report what the probe raised
                out = {"error": traceback.format_exc()}
            child.send(json.dumps(out).encode())
        except BaseException:  # noqa: BLE001 - the forked child must never return into pytest
            code = 71
        finally:
            os._exit(code)
    # ---- PARENT ----
    child.close()
    if on_start is not None:
        on_start(pid)
    violations: list[dict[str, Any]] = []
    sup: Supervisor | None = None
    result: Any = None
    report: dict[str, Any] = {}
    error: str | None = None
    passed = False
    try:
        parent.settimeout(timeout)
        msg, fds, _, _ = socket.recv_fds(parent, 1 << 20, 4)
        hello = json.loads(msg or b"{}")
        error = hello.get("error")
        report = hello.get("report", {})
        passed = bool(fds)
        if fds:
            sup = Supervisor(fds[0], on_violation=violations.append, policy=policy)
        if error is None:
            data = parent.recv(1 << 20)
            reply = json.loads(data or b"{}")
            error = reply.get("error")
            result = reply.get("result")
            if on_result is not None:
                on_result(pid, result)
    except TimeoutError:
        error = "timeout"
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    finally:
        parent.close()
    status = _wait(pid, timeout)
    if sup is not None:
        sup.stop()
    return Outcome(status, result, report, violations, passed, error)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(st)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.005)


def only(plan: ChildPlan, *steps: str) -> ChildPlan:
    """A copy of ``plan`` with every step section except ``steps`` removed."""
    keep = {"version", "report", "pdeathsig", *steps}
    return dataclasses.replace(plan, **{f.name: None for f in dataclasses.fields(plan) if f.name not in keep})


def procs_in_pidns(inode: str) -> list[int]:
    """Host pids whose pid namespace is ``inode`` (e.g. ``pid:[4026532...]``)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{name}/ns/pid") == inode:
                    with open(f"/proc/{name}/stat", "rb") as fh:
                        if fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X"):
                            out.append(int(name))
    return out


def wait_pidns_empty(inode: str, timeout: float = 5.0) -> list[int]:
    """Wait for every process of a pid namespace to end (teardown takes a few ms)."""
    deadline = time.monotonic() + timeout
    left = procs_in_pidns(inode)
    while left and time.monotonic() < deadline:
        time.sleep(0.01)
        left = procs_in_pidns(inode)
    return left


def moderate(**overrides: Any) -> OSSandboxConfig:
    return create_config_by_level(SecurityLevel.MODERATE, **overrides)


# ---------------------------------------------------------------------------
# plans (host side, no fork)


def test_plan_is_plain_data_and_steps_follow_the_profile(tmp_path: Any) -> None:
    basic = build_child_plan(moderate(), backend="basic", workdir=str(tmp_path))
    json.dumps(basic.to_wire())
    assert basic.namespaces is None and basic.mounts is None and basic.network is None
    # Memory is resident memory: without a cgroup the outside monitor enforces it, AS is a backstop.
    limit = moderate().limits.memory_limit_bytes
    assert limit is not None and basic.rlimits is not None and basic.rlimits.limits["AS"] >= 4 * limit
    assert basic.report["cgroups"].startswith("not used")
    nsplan = build_child_plan(moderate(), backend="namespace", workdir="/tmp/work")
    assert nsplan.namespaces is not None and nsplan.mounts is not None and nsplan.seccomp is not None
    assert nsplan.namespaces.kinds == ("user", "mount", "pid", "net", "ipc", "uts", "cgroup")
    srcs = [b.src for b in nsplan.mounts.binds]
    assert os.path.realpath(sys.base_prefix) in srcs
    assert not any(s == "/root" or s.startswith(("/root/.ssh", "/home")) for s in srcs)
    assert nsplan.seccomp.deny_exec is False
    strict = build_child_plan(create_config_by_level("strict"), backend="namespace", workdir="/tmp/work")
    assert strict.seccomp is not None and strict.seccomp.deny_exec is True
    assert ChildPlan.from_wire(json.loads(json.dumps(nsplan.to_wire()))) == nsplan  # survives the frame


def test_child_refuses_a_plan_outside_the_schema() -> None:
    wire = build_child_plan(moderate(), backend="namespace", workdir="/tmp/work").to_wire()
    for mutate, needle in (
        (lambda w: w["mounts"].update(root_size="bogus"), "plan.mounts.root_size: expected int"),
        (lambda w: w["mounts"]["binds"][0].update(extra=1), "unknown field(s) extra"),
        (lambda w: w["landlock"].pop("rw"), "missing field(s) rw"),
        (lambda w: w.update(backend="namespace"), "unknown field(s) backend"),
        (lambda w: w["seccomp"].update(notify="yes"), "plan.seccomp.notify: expected bool"),
        (lambda w: w.update(version=1), "version 1"),
    ):
        bad = json.loads(json.dumps(wire))
        mutate(bad)
        with pytest.raises(ConfinementError, match=re.escape(needle)):
            ChildPlan.from_wire(bad)
    bad_limits = {"enabled": True, "limits": {"AS": "1"}, "shared_uid": None}
    out = run_in_sandbox({**wire, "rlimits": bad_limits}, lambda: "unreachable")
    assert out.error is not None and "plan.rlimits.limits['AS']: expected int" in out.error
    assert out.result is None


def test_seccomp_program_shape() -> None:
    prog = sc.SeccompPolicy.make(deny_exec=True, notify=True).bpf()
    assert prog[0] == (0x20, 0, 0, 4)  # load arch first
    assert prog[2] == (0x06, 0, 0, sc.SECCOMP_RET_KILL_PROCESS)
    assert prog[-1] == (0x06, 0, 0, sc.SECCOMP_RET_ALLOW)
    for _code, jt, jf, _ in prog:  # every jump stays inside the program
        assert jt < len(prog) and jf < len(prog)
    assert sc.syscall_name(sc.syscall_number("ptrace") or -1) == "ptrace"


# ---------------------------------------------------------------------------
# seccomp and the supervisor

ESCAPE_PROBES: dict[str, tuple[str, tuple[int, ...]]] = {
    "ptrace": ("ptrace", (16, 1, 0, 0)),  # PTRACE_ATTACH to pid 1
    "unshare": ("unshare", (ns.CLONE_NEWUSER,)),
    "mount": ("mount", (0, 0, 0, 0, 0)),
    "bpf": ("bpf", (0, 0, 0)),
    "keyctl": ("keyctl", (0, 0, 0)),
    "userfaultfd": ("userfaultfd", (0,)),
    "io_uring_setup": ("io_uring_setup", (1, 0)),
    "clone": ("clone", (ns.CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)),
    "process_vm_readv": ("process_vm_readv", (1, 0, 0, 0, 0, 0)),
}


def _escape_probe() -> dict[str, int]:
    out = {name: raw_syscall(nr_name, *args) for name, (nr_name, args) in ESCAPE_PROBES.items()}
    import fcntl
    import termios

    try:
        fcntl.ioctl(0, termios.TIOCSTI, b"x")
        out["ioctl"] = 0
    except OSError as exc:
        out["ioctl"] = exc.errno or -1
    out["getpid"] = raw_syscall("clone3", 0, 0)  # clone3 -> ENOSYS (libc falls back)
    return out


@needs_seccomp
@needs_notify
@pytest.mark.parametrize("backend", ["basic", pytest.param("namespace", marks=[needs_userns, pytest.mark.namespace])])
def test_seccomp_denies_escape_syscalls_and_supervisor_records_them(backend: str, tmp_path: Any) -> None:
    workdir = str(tmp_path) if PROFILES[backend].workdir is None else str(PROFILES[backend].workdir)
    plan = build_child_plan(moderate(), backend=backend, workdir=workdir)
    out = run_in_sandbox(plan, _escape_probe)
    assert out.error is None, out.error
    assert out.listener_passed
    for name in ESCAPE_PROBES:
        assert out.result[name] == errno.EPERM, (name, out.result)
    assert out.result["ioctl"] == errno.EPERM
    assert out.result["getpid"] == errno.ENOSYS
    recorded = {v["syscall"] for v in out.violations}
    assert recorded >= set(ESCAPE_PROBES) | {"ioctl"}
    for v in out.violations:
        assert v["trusted"] is True and v["action"] == "denied" and v["escape"] is True
        assert isinstance(v["pid"], int) and v["pid"] > 0 and v["time"] > 0
    details = {v["syscall"]: v["detail"] for v in out.violations}
    assert "TIOCSTI" in details["ioctl"] and "CLONE_NEWUSER" in details["clone"]
    assert out.status == 0


@needs_seccomp
def test_seccomp_without_supervisor_still_denies(tmp_path: Any) -> None:
    plan = build_child_plan(moderate(detect_escape_attempts=False), backend="basic", workdir=str(tmp_path))
    assert plan.report["escape_detection"].startswith("not possible")
    out = run_in_sandbox(only(plan, "no_new_privs", "seccomp"), _escape_probe)
    assert out.error is None, out.error
    assert not out.listener_passed and out.violations == []
    assert all(out.result[name] == errno.EPERM for name in ESCAPE_PROBES), out.result


def _exec_probe() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, argv in (("true", ["/bin/true"]), ("strace", ["strace", "-V"]), ("ptrace", ["ptrace", "attach", "1"])):
        try:
            out[name] = subprocess.run(argv, capture_output=True, timeout=10).returncode
        except OSError as exc:
            out[name] = f"errno {exc.errno}"
    return out


@needs_seccomp
@needs_notify
@pytest.mark.parametrize("level", ["strict", "moderate"])
def test_execve_policy(level: str, tmp_path: Any) -> None:
    plan = build_child_plan(create_config_by_level(level), backend="basic", workdir=str(tmp_path))
    policy = SupervisorPolicy(deny_exec=level == "strict")
    out = run_in_sandbox(only(plan, "no_new_privs", "seccomp"), _exec_probe, policy=policy)
    assert out.error is None, out.error
    execs = [v for v in out.violations if v["kind"] == "exec"]
    by_base = {os.path.basename(v["path"]): v for v in execs}
    # escape tools are denied and recorded as escape attempts at every level
    assert out.result["strace"] == f"errno {errno.EPERM}" and by_base["strace"]["escape"] is True
    assert out.result["ptrace"] == f"errno {errno.EPERM}" and by_base["ptrace"]["escape"] is True
    if level == "strict":
        assert out.result["true"] == f"errno {errno.EPERM}"
        assert by_base["true"]["escape"] is False and by_base["true"]["action"] == "denied"
    else:
        assert out.result["true"] == 0
        assert "true" not in by_base


# ---------------------------------------------------------------------------
# landlock


@needs_landlock
def test_landlock_blocks_paths_outside_the_allowlist(tmp_path: Any) -> None:
    work = tmp_path / "work"
    work.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s3cret")
    plan = build_child_plan(moderate(), backend="basic", workdir=str(work))

    def probe() -> dict[str, Any]:
        res: dict[str, Any] = {}
        for key, path, mode in (
            ("read_hostname", "/etc/hostname", "r"),
            ("read_passwd", "/etc/passwd", "r"),
            ("read_outside", str(outside / "secret.txt"), "r"),
            ("write_outside", str(outside / "new.txt"), "w"),
            ("write_work", str(work / "ok.txt"), "w"),
            ("read_stdlib", os.path.join(os.path.dirname(os.__file__), "os.py"), "r"),
        ):
            try:
                with open(path, mode) as fh:
                    if mode == "w":
                        fh.write("x")
                    else:
                        fh.read(1)
                res[key] = 0
            except OSError as exc:
                res[key] = exc.errno
        try:
            os.kill(os.getppid(), 0)
            res["signal_host"] = 0
        except OSError as exc:
            res["signal_host"] = exc.errno
        return res

    out = run_in_sandbox(only(plan, "no_new_privs", "landlock"), probe)
    assert out.error is None, out.error
    assert out.report["landlock"]["abi"] == LANDLOCK_ABI
    r = out.result
    assert r["read_passwd"] == 0 and r["write_work"] == 0 and r["read_stdlib"] == 0
    assert r["read_hostname"] == errno.EACCES
    assert r["read_outside"] == errno.EACCES
    assert r["write_outside"] == errno.EACCES
    assert not (outside / "new.txt").exists()
    if LANDLOCK_ABI >= 6:
        assert r["signal_host"] == errno.EPERM  # signals scoped to the sandbox


# ---------------------------------------------------------------------------
# cgroups


@needs_cgroups
def test_cgroup_memory_limit_kills_and_oom_is_detected() -> None:
    limits = ResourceLimits(memory_limit_bytes=48 * MiB, max_processes=16)
    with cg.create_cgroup(limits, name=f"test-{uuid.uuid4().hex[:8]}") as mgr:
        plan = ChildPlan(cgroup=mgr.child_section())

        def probe() -> int:
            chunks = []
            for _ in range(64):  # 256 MiB, touched page by page
                b = bytearray(4 * MiB)
                for i in range(0, len(b), 4096):
                    b[i] = 1
                chunks.append(b)
            return len(chunks)

        out = run_in_sandbox(plan, probe)
        assert out.status == -signal.SIGKILL, out
        assert mgr.oom_killed() is True
        peak = mgr.memory_peak()
        assert peak is not None and 40 * MiB <= peak <= 48 * MiB
        assert out.report["cgroups"]["version"] == mgr.version
        dirs = list(getattr(mgr, "dirs", {}).values()) or [getattr(mgr, "path", "")]
    assert not any(os.path.exists(d) for d in dirs)


@needs_cgroups
def test_cgroup_pids_limit_stops_a_fork_bomb() -> None:
    limits = ResourceLimits(memory_limit_bytes=256 * MiB, max_processes=12)
    mgr = cg.create_cgroup(limits, name=f"test-{uuid.uuid4().hex[:8]}")
    try:
        plan = ChildPlan(cgroup=mgr.child_section())

        def probe() -> dict[str, Any]:
            forks = 0
            err = None
            for _ in range(200):
                try:
                    pid = os.fork()
                except OSError as exc:
                    err = exc.errno
                    break
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                forks += 1
            return {"forks": forks, "errno": err}

        leftover: list[int] = []
        out = run_in_sandbox(plan, probe, on_result=lambda pid, res: leftover.extend(mgr.procs()))
        assert out.error is None, out.error
        assert out.result["errno"] == errno.EAGAIN
        assert out.result["forks"] == 11  # pids.max 12, the probe itself is one
        assert len(leftover) >= 11 and mgr.pids_current() is not None  # the bomb, still held
    finally:
        mgr.remove()
    assert mgr.procs() == []


# ---------------------------------------------------------------------------
# namespaces + mounts + capabilities: what the worker can see


@pytest.fixture
def fake_home_secret() -> Iterator[str | None]:
    """A fake secret in the host user's home, when that home is a blocked path."""
    home = os.path.expanduser("~")
    blocked = FilesystemConfig().blocked_paths
    if not any(home == b or home.startswith(b + "/") for b in blocked) or not os.access(home, os.W_OK):
        yield None
        return
    path = os.path.join(home, f".glsandbox-fake-secret-{uuid.uuid4().hex[:8]}")
    with open(path, "w") as fh:
        fh.write("AKIA-FAKE-SECRET")
    try:
        yield path
    finally:
        os.unlink(path)


@needs_userns
@pytest.mark.namespace
def test_namespace_view(fake_home_secret: str | None) -> None:
    cfg = moderate(limits=ResourceLimits(disk_quota_bytes=8 * MiB, max_file_size_bytes=64 * MiB))
    plan = build_child_plan(cfg, backend="namespace", workdir="/tmp/work")
    secrets = [
        "/root/.ssh",
        "/home",
        "/etc/shadow",
        "/var/run/docker.sock",
        "/run/docker.sock",
        os.path.expanduser("~/.ssh"),
    ]
    if fake_home_secret:
        secrets.append(fake_home_secret)

    def probe() -> dict[str, Any]:
        res: dict[str, Any] = {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd()}
        res["proc_pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        res["hostname"] = socket.gethostname()
        with open("/proc/net/dev") as fh:
            res["ifaces"] = sorted(line.split(":")[0].strip() for line in fh.read().splitlines()[2:])
        res["visible"] = [p for p in secrets if os.path.lexists(p)]
        with open("/proc/self/status") as fh:
            status = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
        res["capeff"] = int(status["CapEff"].strip(), 16)
        res["capbnd"] = int(status["CapBnd"].strip(), 16)
        res["nnp"] = status["NoNewPrivs"].strip()
        res["seccomp"] = status["Seccomp"].strip()
        with open("/etc/passwd") as fh:
            res["passwd_users"] = [line.split(":")[0] for line in fh]
        for key, path in (
            ("write_usr", "/usr/glsandbox-test"),
            ("write_root", "/glsandbox-test"),
            ("write_etc", "/etc/passwd"),
        ):
            try:
                with open(path, "a") as fh:
                    fh.write("x")
                res[key] = 0
            except OSError as exc:
                res[key] = exc.errno
        with open("/tmp/ok", "w") as fh:
            fh.write("ok")
        try:  # the scratch tmpfs holds at most disk_quota_bytes
            with open("/tmp/fill", "wb") as fh:
                for _ in range(16):
                    fh.write(b"\0" * MiB)
                    fh.flush()
            res["fill"] = 0
        except OSError as exc:
            res["fill"] = exc.errno
        res["pidns"] = os.readlink("/proc/self/ns/pid")
        import json as _json  # lazily imported stdlib still loads inside

        res["json_ok"] = _json is not None
        import xml.dom.minidom

        res["xml_ok"] = xml.dom.minidom.__name__
        return res

    out = run_in_sandbox(plan, probe)
    assert out.error is None, out.error
    r = out.result
    assert r["pid"] == 2 and r["proc_pids"] == [2]  # own pid tree only; init hidden (hidepid)
    assert r["uid"] == ns.SANDBOX_UID and r["gid"] == ns.SANDBOX_GID
    assert r["cwd"] == "/tmp/work"
    assert r["hostname"] == "sandbox"
    assert r["ifaces"] == ["lo"]
    assert r["visible"] == []
    assert r["capeff"] == 0 and r["capbnd"] == 0 and r["nnp"] == "1" and r["seccomp"] == "2"
    assert "sandbox" in r["passwd_users"] and len(r["passwd_users"]) <= 3
    assert r["write_usr"] in (errno.EROFS, errno.EACCES)
    assert r["write_root"] in (errno.EROFS, errno.EACCES)
    assert r["write_etc"] in (errno.EROFS, errno.EACCES)
    assert r["fill"] == errno.ENOSPC
    assert r["xml_ok"] == "xml.dom.minidom"
    assert wait_pidns_empty(r["pidns"]) == []  # the whole pid namespace is gone
    assert out.report["mounts"]["proc"].startswith("hidepid")


def interrupt_sandbox(plan: ChildPlan) -> Outcome:
    """HOST side: run a worker that sleeps, send SIGINT to the outermost process once it is ready."""
    ready_r, ready_w = os.pipe()

    def waits_for_sigint() -> str:
        try:
            os.write(ready_w, b"r")
            time.sleep(20)
        except KeyboardInterrupt:
            return "KeyboardInterrupt"
        return "slept"

    def interrupt_when_ready(pid: int) -> None:
        def go() -> None:
            os.read(ready_r, 1)
            os.kill(pid, signal.SIGINT)

        threading.Thread(target=go, daemon=True).start()

    try:
        return run_in_sandbox(plan, waits_for_sigint, on_start=interrupt_when_ready)
    finally:
        os.close(ready_r)
        os.close(ready_w)


@needs_userns
@pytest.mark.namespace
def test_namespace_worker_is_interruptible_when_the_host_ignores_sigint() -> None:
    """A host started as a background job of a non-interactive shell (``pytest &`` in a CI
    script) ignores SIGINT, and SIG_IGN survives fork and exec: the worker must still get
    the forwarded SIGINT as KeyboardInterrupt (CI saw "slept" here)."""
    plan = build_child_plan(moderate(), backend="namespace", workdir="/tmp/work")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        out = interrupt_sandbox(plan)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert out.result == "KeyboardInterrupt", out


@needs_userns
@pytest.mark.namespace
def test_namespace_exit_status_signals_and_no_leftovers() -> None:
    plan = build_child_plan(moderate(), backend="namespace", workdir="/tmp/work")

    out = run_in_sandbox(plan, lambda: os._exit(7))
    assert out.status == 7
    out = run_in_sandbox(plan, lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert out.status == -signal.SIGKILL

    # SIGINT to the outermost process reaches the worker as KeyboardInterrupt.
    out = interrupt_sandbox(plan)
    assert out.result == "KeyboardInterrupt", out

    # A setsid double-fork daemon dies with the sandbox when the host kills it
    # (SIGKILL to the outermost process while the worker is still running).
    info_r, info_w = os.pipe()

    def daemon() -> str:
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(w, b"up")
                time.sleep(60)
            os._exit(0)
        os.read(r, 2)
        os.write(info_w, os.readlink("/proc/self/ns/pid").encode())
        time.sleep(60)
        return "not killed"

    seen: dict[str, Any] = {}

    def kill_when_ready(pid: int) -> None:
        def go() -> None:
            inode = os.read(info_r, 100).decode()
            seen["inode"] = inode
            seen["before"] = procs_in_pidns(inode)
            os.kill(pid, signal.SIGKILL)

        threading.Thread(target=go, daemon=True).start()

    out = run_in_sandbox(plan, daemon, on_start=kill_when_ready)
    os.close(info_r)
    os.close(info_w)
    assert out.status == -signal.SIGKILL and out.result is None
    assert len(seen["before"]) >= 3  # init, worker, daemon (and maybe its exiting parent)
    assert wait_pidns_empty(seen["inode"]) == []


@needs_userns
@pytest.mark.namespace
def test_zygote_sandbox_has_no_map_writer_and_close_leaves_no_process() -> None:
    """Cloned by the template straight into its namespaces, the sandbox is the init (pid 1;
    the template wrote its id maps) and the worker: no process only to write the maps or to
    unshare. close() returns once every one of them is dead (the rest of the teardown runs
    on the janitor)."""
    from glsandbox_kernel import OSSandbox, procfs, zygote
    from glsandbox_kernel.backends.zygote_backend import flush_cleanups
    from glsandbox_kernel.procfs import descendants

    from ..conftest import live_pids

    cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
    with OSSandbox(cfg) as box:
        assert box.execute(os.getpid) == 2  # the worker, pid 2 of its pid namespace
        worker = box.session.worker
        assert worker is not None
        root = worker.root_pid
        tree = [root, *descendants(root)]
        assert len(tree) == 2  # the init, the worker
        with open(f"/proc/{root}/stat", "rb") as fh:
            ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        assert ppid == zygote.get_zygote(sys.executable).proc.pid  # the init is the template's own child
        assert procfs.ns_pids(root)[-1] == 1  # pid 1 of the sandbox's pid namespace
        assert os.readlink(f"/proc/{root}/ns/user") != os.readlink("/proc/self/ns/user")
        with open(f"/proc/{root}/uid_map") as fh:
            inside, outside, count = fh.read().split()
        assert (int(inside), int(count)) == (ns.SANDBOX_UID, 1)
        assert int(outside) == (ns.UNPRIVILEGED_HOST_ID if os.geteuid() == 0 else os.geteuid())
        pids = box.worker_pids
        assert set(tree) <= set(pids)
    assert live_pids(pids) == []  # dead when close() returned: nothing for the janitor but reaping
    assert flush_cleanups()


@needs_userns
@pytest.mark.namespace
def test_namespace_setup_failure_is_reported_not_hidden(tmp_path: Any) -> None:
    plan = build_child_plan(moderate(), backend="namespace", workdir="/tmp/work")
    assert plan.mounts is not None
    plan = dataclasses.replace(plan, mounts=dataclasses.replace(plan.mounts, root_size=-1))  # tmpfs: EINVAL
    out = run_in_sandbox(plan, lambda: "unreachable")
    assert out.error is not None and "mounts: mount(" in out.error
    assert out.result is None


# ---------------------------------------------------------------------------
# network: loopback only, and the proxy


@pytest.fixture
def http_server(host_server: tuple[int, list[Any]]) -> int:
    return host_server[0]


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A loopback listener that must never see a connection (denied target)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    try:
        yield s
    finally:
        s.close()


def _no_connection_reached(s: socket.socket) -> bool:
    r, _, _ = select.select([s], [], [], 0.05)
    return not r


def _loopback_only(sockaddr: tuple[Any, ...], family: int, timeout: float) -> socket.socket:
    assert ipaddress.ip_address(sockaddr[0]).is_loopback, f"refusing to connect to {sockaddr}"
    return px._default_connector(sockaddr, family, timeout)


@pytest.fixture
def proxy_dir(tmp_path: Any) -> Iterator[str]:
    d = tmp_path / "proxy"
    d.mkdir()
    os.chmod(d, 0o700)
    yield str(d)


def _ask(path: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_proxy_allows_listed_and_denies_others_before_connecting(
    proxy_dir: str, http_server: int, silent_listener: socket.socket
) -> None:
    port2 = silent_listener.getsockname()[1]
    path = os.path.join(proxy_dir, "proxy.sock")
    violations: list[dict[str, Any]] = []
    with net.NetworkProxy(
        path, (f"127.0.0.1:{http_server}",), None, on_violation=violations.append, connector=_loopback_only
    ) as proxy:
        # CONNECT to the allowed server, then HTTP through the tunnel
        resp = _ask(path, f"CONNECT 127.0.0.1:{http_server} HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.0\r\n\r\n".encode())
        assert resp.startswith(b"HTTP/1.1 200 Connection established") and _Hello.body in resp
        # absolute-form request, what urllib sends for http:// through a proxy
        resp = _ask(
            path,
            f"GET http://127.0.0.1:{http_server}/x HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Connection: keep-alive\r\n\r\n".encode(),
        )
        assert b" 200 " in resp.split(b"\r\n", 1)[0] and resp.endswith(_Hello.body)
        # the plain TCP forward protocol
        resp = _ask(path, f"FORWARD 127.0.0.1:{http_server}\nGET / HTTP/1.0\r\n\r\n".encode())
        assert resp.startswith(b"OK\n") and _Hello.body in resp
        sent, received = proxy.stats()["bytes_sent"], proxy.stats()["bytes_received"]
        assert sent > 0 and received >= 3 * len(_Hello.body)
        # denied: not listed, link-local, metadata name, IPv6 link-local
        for req in (
            f"CONNECT 127.0.0.1:{port2} HTTP/1.1\r\n\r\n",
            f"GET http://127.0.0.1:{port2}/ HTTP/1.1\r\n\r\n",
            f"FORWARD 127.0.0.1:{port2}\n",
            "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n",
            "CONNECT metadata.google.internal:80 HTTP/1.1\r\n\r\n",
            "CONNECT [fe80::1]:80 HTTP/1.1\r\n\r\n",
            "CONNECT [fd00:ec2::254]:80 HTTP/1.1\r\n\r\n",
        ):
            resp = _ask(path, req.encode())
            assert resp.startswith((b"HTTP/1.1 403", b"DENIED")), (req, resp)
        assert _no_connection_reached(silent_listener)
        assert proxy.stats() == {"bytes_sent": sent, "bytes_received": received}
        assert len(violations) == 7
        assert all(v["kind"] == "network" and v["trusted"] and v["action"] == "denied" for v in violations)
        assert "169.254.169.254:80" in violations[3]["detail"] and "always blocked" in violations[3]["detail"]
    assert not os.path.exists(path)


def test_proxy_any_mode_still_blocks_metadata_and_host_loopback(proxy_dir: str, http_server: int) -> None:
    path = os.path.join(proxy_dir, "p.sock")
    with net.NetworkProxy(path, (), None, mode="any", connector=_loopback_only) as proxy:
        assert proxy.decide("169.254.169.254", 80)[0] is False
        assert proxy.decide("metadata.google.internal", 80)[0] is False
        assert proxy.decide("127.0.0.1", http_server)[0] is False  # host services need an explicit entry
        assert proxy.decide("::ffff:169.254.169.254", 80)[0] is False
        assert proxy.decide("0.0.0.0", 80)[0] is False


def test_proxy_bandwidth_token_bucket() -> None:
    bucket = px._TokenBucket(1 * MiB)
    t0 = time.monotonic()
    bucket.consume(MiB)  # the one-second burst
    bucket.consume(MiB // 2)
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed <= 1.5


@needs_userns
@pytest.mark.namespace
def test_namespace_network_through_proxy_with_urllib(
    proxy_dir: str, http_server: int, silent_listener: socket.socket
) -> None:
    port2 = silent_listener.getsockname()[1]
    path = os.path.join(proxy_dir, "proxy.sock")
    os.chmod(proxy_dir, 0o755)  # the sandbox uid binds the socket from here
    cfg = moderate(network=NetworkConfig(allow_network=True, allowed_hosts=(f"127.0.0.1:{http_server}",)))
    violations: list[dict[str, Any]] = []
    with net.NetworkProxy(
        path, cfg.network.allowed_hosts, None, on_violation=violations.append, connector=_loopback_only
    ) as proxy:
        plan = build_child_plan(cfg, backend="namespace", workdir="/tmp/work", proxy_socket=path)

        def probe() -> dict[str, Any]:
            import urllib.error
            import urllib.request

            res: dict[str, Any] = {"proxy": os.environ.get("HTTP_PROXY")}
            with urllib.request.urlopen(f"http://127.0.0.1:{http_server}/", timeout=10) as r:
                res["allowed"] = len(r.read())
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port2}/", timeout=10)
                res["denied"] = "reached"
            except urllib.error.HTTPError as exc:
                res["denied"] = exc.code
            s = socket.socket()
            s.settimeout(5)
            try:  # no route around the proxy: the host's loopback is not ours
                s.connect(("127.0.0.1", http_server))
                res["direct"] = 0
            except OSError as exc:
                res["direct"] = exc.errno
            finally:
                s.close()
            return res

        out = run_in_sandbox(plan, probe)
        stats = proxy.stats()
    assert out.error is None, out.error
    r = out.result
    assert r["proxy"].startswith("http://127.0.0.1:")
    assert r["allowed"] == len(_Hello.body)
    assert r["denied"] == 403
    assert r["direct"] == errno.ECONNREFUSED
    assert _no_connection_reached(silent_listener)
    assert stats["bytes_received"] >= len(_Hello.body) and stats["bytes_sent"] > 0
    assert [v["port"] for v in violations] == [port2]


@needs_userns
@pytest.mark.namespace
def test_no_network_sandbox_cannot_reach_host_loopback(http_server: int) -> None:
    plan = build_child_plan(moderate(), backend="namespace", workdir="/tmp/work")

    def probe() -> int:
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", http_server))
            return 0
        except OSError as exc:
            return exc.errno or -1
        finally:
            s.close()

    out = run_in_sandbox(plan, probe)
    assert out.result == errno.ECONNREFUSED
    assert "HTTP_PROXY" not in out.report.get("network", {})


# ---------------------------------------------------------------------------
# the same suite as an unprivileged user


@pytest.mark.unprivileged
def test_suite_as_unprivileged_user() -> None:
    proc = rerun_as_unprivileged(__file__, "-k", "not test_suite_as_unprivileged_user", timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
