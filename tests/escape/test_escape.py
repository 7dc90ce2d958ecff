"""The escape battery (issue 3): real attacks inside real OSSandbox sandboxes, at each level.

Every test runs an attack as sandboxed code through the public API and
asserts three things: what the kernel answered inside (the errno the attack
got, what it could see), what the trusted side recorded (the exception the
caller got, ``metrics`` and the JSON-lines audit log, whose chain must
verify), and that nothing is left behind (no process, no cgroup, no proxy
socket). The suite runs as root and again as uid 65534
(:func:`test_escape_battery_as_unprivileged_user`); cgroup-only checks skip
there with the reason.
"""

from __future__ import annotations

import errno
import glob
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import (
    FilesystemConfig,
    IsolationType,
    NetworkConfig,
    OSSandbox,
    ResourceLimits,
    SandboxEscapeError,
    SandboxMemoryError,
    SandboxViolationError,
    create_config_by_level,
)
from glsandbox_kernel.audit.verify import read_jsonl, verify_file
from glsandbox_kernel.backends.basic import flush_cleanups
from glsandbox_kernel.backends.namespace import NamespaceBackend
from glsandbox_kernel.config import MiB

from ..backends.test_confinement import procs_in_pidns, wait_pidns_empty
from ..conftest import HostHello as _Hello
from ..conftest import rerun_as_unprivileged, wait_removed

# Attack functions travel by value: the worker never imports this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

LINUX = sys.platform.startswith("linux")
IS_ROOT = LINUX and os.geteuid() == 0
INNER = os.environ.get("GLSANDBOX_TEST_UNPRIVILEGED") == "1"
NS_OK, NS_WHY = NamespaceBackend.available() if LINUX else (False, "not Linux")
if LINUX:
    from glsandbox_kernel.confinement import cgroups as _cg

    CG_OK, CG_WHY = _cg.available()
else:  # pragma: no cover
    CG_OK, CG_WHY = False, "not Linux"

pytestmark = [
    pytest.mark.namespace,
    pytest.mark.skipif(not NS_OK, reason=f"namespace backend unavailable: {NS_WHY}"),
]
needs_cgroups = pytest.mark.skipif(not CG_OK, reason=f"cgroups unavailable here: {CG_WHY}")
LEVELS = ["strict", "moderate", "lenient"]


# ---------------------------------------------------------------------------
# the harness


class Box:
    """One sandbox under attack, with its audit file and its leftovers check."""

    def __init__(self, level: str, audit_path: str, **overrides: Any) -> None:
        overrides.setdefault("isolation_type", IsolationType.NAMESPACE)
        self.config = create_config_by_level(level, audit_log_path=audit_path, **overrides)
        self.audit_path = audit_path
        self.sb = OSSandbox(self.config)
        self.enforcing = self.config.sandbox_mode.value == "enforcing"

    def run(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, BaseException | None]:
        """(result, None) or (None, the exception the caller got)."""
        try:
            return self.sb.execute(fn, *args), None
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            return None, exc

    def records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.audit_path)

    def last(self) -> dict[str, Any]:
        return [r for r in self.records() if r["event_type"] not in ("session_start", "fallback")][-1]

    def close(self) -> None:
        worker = self.sb.session.worker
        cgroup = getattr(worker, "cgroup", None)
        proxy_dir = getattr(worker, "proxy_dir", None)
        pids = self.sb.worker_pids
        self.sb.close()
        # nothing left behind: processes, cgroup, proxy socket; the audit chain verifies
        assert not [p for p in pids if _alive(p)], "sandbox processes survived close()"
        if cgroup is not None:
            paths = list(getattr(cgroup, "dirs", {}).values()) or [cgroup.path]
            assert wait_removed(paths) == [], "cgroup not removed"
        if proxy_dir is not None:
            assert wait_removed([proxy_dir]) == [], "proxy socket directory not removed"
        result = verify_file(self.audit_path)
        assert result.ok, result


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


@pytest.fixture
def box(tmp_path: Any) -> Iterator[Callable[..., Box]]:
    made: list[Box] = []

    def make(level: str, **overrides: Any) -> Box:
        b = Box(level, str(tmp_path / f"audit-{len(made)}.jsonl"), **overrides)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
    ids = [b.sb.session_id[:12] for b in made]
    flush_cleanups()  # cgroups are removed in the background after close
    left = [p for p in glob.glob("/sys/fs/cgroup/*/**/glsandbox-*", recursive=True) if any(i in p for i in ids)]
    assert left == [], f"cgroups left behind: {left}"


def expect_violation(b: Box, result: Any, exc: BaseException | None, *, escape: bool, syscall: str) -> dict[str, Any]:
    """ENFORCING: the call failed with the right class; PERMISSIVE: it went on. Both: recorded."""
    if b.enforcing:
        cls = SandboxEscapeError if escape else SandboxViolationError
        assert isinstance(exc, cls), f"expected {cls.__name__}, got {exc!r}"
        if escape:
            assert syscall in str(exc)
    else:
        assert not isinstance(exc, SandboxViolationError), exc
    m = b.sb.metrics
    assert m.violations_detected >= 1
    assert (m.escape_attempts >= 1) == escape
    rec = b.last()
    assert rec["event_type"] == ("escape_attempt" if escape else "violation")
    found = [v for v in rec["violations"] if v.get("syscall") == syscall or syscall in str(v.get("detail"))]
    assert found, rec["violations"]
    v = found[0]
    assert v["trusted"] is True and v["action"] == "denied" and v["escape"] is escape
    return v


def expect_clean(b: Box, exc: BaseException | None) -> None:
    """No exception, no violation, a success record."""
    assert exc is None, exc
    assert b.sb.metrics.violations_detected == 0
    assert b.last()["event_type"] == "execution_success"


# ---------------------------------------------------------------------------
# attacks (they run inside the sandbox)


def attack_read_secrets(paths: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in paths:
        try:
            with open(p, "rb") as fh:
                out[p] = fh.read(64).decode("latin-1")
        except OSError as exc:
            out[p] = exc.errno
    return out


def attack_env(host_pid: int) -> dict[str, Any]:
    import os

    try:
        with open(f"/proc/{host_pid}/environ", "rb") as fh:
            host_env: Any = fh.read()
    except OSError as exc:
        host_env = exc.errno
    return {"env": dict(os.environ), "host_environ": host_env}


def attack_write_outside(paths: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in paths:
        try:
            with open(p, "w") as fh:
                fh.write("pwned")
            out[p] = 0
        except OSError as exc:
            out[p] = exc.errno
    return out


def attack_fork_bomb() -> dict[str, Any]:
    import os
    import time

    n = 0
    err = None
    for _ in range(10_000):
        try:
            pid = os.fork()
        except OSError as exc:
            err = exc.errno
            break
        if pid == 0:
            time.sleep(120)
            os._exit(0)
        n += 1
    return {"forks": n, "errno": err}


def attack_memory_bomb() -> int:
    return len([0] * (200 * 1024 * 1024))


def attack_tmpfs_memory(mib: int) -> int:
    """Fill the private /tmp (tmpfs pages count as memory, not as address space)."""
    written = 0
    with open("/tmp/fill", "wb") as fh:
        for _ in range(mib):
            fh.write(b"\1" * (1024 * 1024))
            written += 1
    return written


def attack_disk_fill(mib: int) -> dict[str, Any]:
    written = 0
    try:
        with open("/tmp/work/fill", "wb") as fh:
            for _ in range(mib):
                fh.write(b"\0" * (1024 * 1024))
                fh.flush()
                written += 1
        return {"written": written, "errno": 0}
    except OSError as exc:
        return {"written": written, "errno": exc.errno}


def attack_fd_exhaustion() -> dict[str, Any]:
    import os

    fds = []
    err = None
    try:
        for _ in range(100_000):
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as exc:
        err = exc.errno
    finally:
        for fd in fds:
            os.close(fd)
    return {"opened": len(fds), "errno": err}


def attack_connect(port: int) -> int:
    import socket

    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        return 0
    except OSError as exc:
        return exc.errno or -1
    finally:
        s.close()


def attack_http(port: int) -> Any:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            return len(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code


def attack_ptrace_host(host_pid: int) -> int:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(16, host_pid, None, None) != 0:  # PTRACE_ATTACH
        return ctypes.get_errno()
    return 0


def attack_proc_mem(host_pid: int) -> int:
    try:
        with open(f"/proc/{host_pid}/mem", "rb") as fh:
            fh.read(1)
        return 0
    except OSError as exc:
        return exc.errno or -1


def attack_kill_host(host_pid: int) -> dict[str, int]:
    import os
    import signal

    out = {}
    for name, target in (("host_pid", host_pid), ("init", 1)):
        try:
            os.kill(target, signal.SIGKILL)
            out[name] = 0
        except OSError as exc:
            out[name] = exc.errno or -1
    try:
        os.kill(-1, signal.SIGTERM)  # everything we may signal (never the host)
        out["all"] = 0
    except OSError as exc:
        out["all"] = exc.errno or -1
    return out


def attack_daemon() -> str:
    import os
    import time

    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, b"up")
            time.sleep(300)
        os._exit(0)
    os.read(r, 2)
    return os.readlink("/proc/self/ns/pid")


SYSCALL_ATTACKS: dict[str, tuple[str, tuple[int, ...]]] = {
    "mount": ("mount", (0, 0, 0, 0, 0)),
    "unshare": ("unshare", (0x10000000,)),
    "bpf": ("bpf", (0, 0, 0)),
    "keyctl": ("keyctl", (0, 0, 0)),
    "userfaultfd": ("userfaultfd", (0,)),
    "io_uring_setup": ("io_uring_setup", (1, 0)),
}


def attack_syscall(name: str, nr: int, args: tuple[int, ...]) -> int:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(nr, *(ctypes.c_long(a) for a in args)) < 0:
        return ctypes.get_errno()
    return 0


def attack_tiocsti() -> int:
    import fcntl
    import os
    import termios

    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"x")
        return 0
    except OSError as exc:
        return exc.errno or -1
    finally:
        os.close(fd)


def attack_exec() -> Any:

    return subprocess.run(["/bin/true"], check=False).returncode


def seed_escape_attempt() -> None:
    import os

    subprocess.run(["ptrace", "attach", str(os.getpid())])


# ---------------------------------------------------------------------------
# the battery


@pytest.fixture
def fake_home_secret() -> Iterator[str | None]:
    home = os.path.expanduser("~")
    if not (home == "/root" or home.startswith(("/root/", "/home/"))) or not os.access(home, os.W_OK):
        yield None
        return
    path = os.path.join(home, f".glsandbox-fake-secret-{uuid.uuid4().hex[:8]}")
    with open(path, "w") as fh:
        fh.write("AKIA-FAKE-HOME-SECRET")
    try:
        yield path
    finally:
        os.unlink(path)


@pytest.mark.parametrize("level", LEVELS)
def test_read_shadow_and_home_secrets(level: str, box: Callable[..., Box], fake_home_secret: str | None) -> None:
    b = box(level)
    paths = ["/etc/shadow", "/etc/gshadow", "/root/.ssh/id_rsa", "/root/.bashrc", "/var/run/docker.sock"]
    if fake_home_secret:
        paths.append(fake_home_secret)
    result, exc = b.run(attack_read_secrets, paths)
    expect_clean(b, exc)
    for p in paths:
        assert result[p] in (errno.ENOENT, errno.EACCES), (p, result[p])


@pytest.mark.parametrize("level", LEVELS)
def test_host_environment_secrets(level: str, box: Callable[..., Box], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-aws-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "fake-token")
    monkeypatch.setenv("JPY_SESSION_NAME", "/root/secret-connection-file.json")
    b = box(level)
    result, exc = b.run(attack_env, os.getpid())
    expect_clean(b, exc)
    env = result["env"]
    assert not {"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "JPY_SESSION_NAME"} & set(env)
    assert "fake" not in repr(env)
    assert result["host_environ"] == errno.ENOENT  # the host is not in the sandbox's pid namespace


@pytest.mark.parametrize("level", LEVELS)
def test_write_outside_allowed_paths(level: str, box: Callable[..., Box], tmp_path: Any) -> None:
    b = box(level)
    host_file = str(tmp_path / "written-by-sandbox")
    paths = ["/usr/pwned", "/etc/pwned", "/pwned", "/proc/sys/kernel/hostname", host_file, "/root/pwned"]
    result, exc = b.run(attack_write_outside, paths)
    expect_clean(b, exc)
    for p in paths:
        assert result[p] in (errno.EROFS, errno.EACCES, errno.ENOENT, errno.EPERM), (p, result[p])
    assert not os.path.exists(host_file)
    result, exc = b.run(attack_write_outside, ["/tmp/work/ok", "/tmp/ok"])
    assert result == {"/tmp/work/ok": 0, "/tmp/ok": 0}


@pytest.mark.parametrize("level", LEVELS)
def test_fork_bomb_is_stopped_by_the_pids_limit(level: str, box: Callable[..., Box]) -> None:
    b = box(level, limits=ResourceLimits(max_processes=16, memory_limit_bytes=256 * MiB))
    result, exc = b.run(attack_fork_bomb)
    expect_clean(b, exc)
    assert result["errno"] == errno.EAGAIN
    assert result["forks"] <= 16
    # the session survives the bomb; its children die with the sandbox (checked on close)
    assert b.run(attack_connect, 1)[1] is None


@pytest.mark.parametrize("level", LEVELS)
def test_memory_bomb(level: str, box: Callable[..., Box]) -> None:
    b = box(level, limits=ResourceLimits(memory_limit_bytes=128 * MiB))
    _result, exc = b.run(attack_memory_bomb)
    assert isinstance(exc, SandboxMemoryError), exc
    assert isinstance(exc, MemoryError) and exc.limit == 128 * MiB
    assert b.last()["event_type"] == "memory_exceeded"
    assert b.run(attack_connect, 1)[1] is None  # a working sandbox afterwards


@needs_cgroups
def test_memory_bomb_through_tmpfs_is_killed_by_the_cgroup(box: Callable[..., Box]) -> None:
    """tmpfs pages are not address space: RLIMIT_AS misses them, the memory cgroup does not."""
    b = box("moderate", limits=ResourceLimits(memory_limit_bytes=64 * MiB, disk_quota_bytes=512 * MiB))
    _result, exc = b.run(attack_tmpfs_memory, 256)
    assert isinstance(exc, SandboxMemoryError), exc
    assert exc.peak is not None and exc.peak >= 48 * MiB
    rec = b.last()
    assert rec["event_type"] == "memory_exceeded"
    assert b.run(attack_connect, 1)[1] is None  # a fresh worker


@pytest.mark.parametrize("level", LEVELS)
def test_disk_fill_is_stopped_by_the_quota(level: str, box: Callable[..., Box]) -> None:
    b = box(level, limits=ResourceLimits(disk_quota_bytes=16 * MiB, max_file_size_bytes=1024 * MiB))
    result, exc = b.run(attack_disk_fill, 64)
    expect_clean(b, exc)
    assert result["errno"] == errno.ENOSPC and result["written"] <= 16


@pytest.mark.parametrize("level", LEVELS)
def test_fd_exhaustion(level: str, box: Callable[..., Box]) -> None:
    b = box(level, limits=ResourceLimits(max_open_files=64))
    result, exc = b.run(attack_fd_exhaustion)
    expect_clean(b, exc)
    assert result["errno"] == errno.EMFILE and result["opened"] < 64
    assert b.run(attack_fd_exhaustion)[0]["errno"] == errno.EMFILE  # the session still works


@pytest.mark.parametrize("level", ["strict", "moderate"])
def test_no_network_sandbox_cannot_reach_host_loopback(level: str, box: Callable[..., Box], host_server: Any) -> None:
    port, accepted = host_server
    b = box(level)
    assert b.config.network.mode == "none"
    result, exc = b.run(attack_connect, port)
    expect_clean(b, exc)
    assert result == errno.ECONNREFUSED  # its own loopback, nothing listens there
    assert accepted == []
    assert b.sb.metrics.network_bytes_received is None  # no proxy: nothing measured, not 0


@pytest.mark.parametrize("level", ["moderate", "lenient"])
def test_allowlist_allow_and_deny_through_the_proxy(level: str, box: Callable[..., Box], host_server: Any) -> None:
    port, accepted = host_server
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        denied_port = other.getsockname()[1]
        net = NetworkConfig(allow_network=True, allowed_hosts=(f"127.0.0.1:{port}",))
        b = box(level, network=net)
        result, exc = b.run(attack_http, port)
        expect_clean(b, exc)
        assert result == len(_Hello.body) and len(accepted) == 1
        assert b.sb.metrics.network_bytes_received is not None
        assert b.sb.metrics.network_bytes_received >= len(_Hello.body)
        assert b.sb.metrics.network_bytes_sent is not None and b.sb.metrics.network_bytes_sent > 0
        result, exc = b.run(attack_http, denied_port)
        v = expect_violation(b, result, exc, escape=False, syscall=f"127.0.0.1:{denied_port}")
        assert v["kind"] == "network"
        if not b.enforcing:
            assert result == 403
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.accept()  # the proxy decided before connecting
        result, exc = b.run(attack_connect, port)  # no way around the proxy
        assert result == errno.ECONNREFUSED


@pytest.mark.parametrize("level", LEVELS)
def test_ptrace_of_the_host_process(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    result, exc = b.run(attack_ptrace_host, os.getpid())
    expect_violation(b, result, exc, escape=True, syscall="ptrace")
    if not b.enforcing:
        assert result == errno.EPERM


@pytest.mark.parametrize("level", LEVELS)
def test_proc_mem_of_the_host_process(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    result, exc = b.run(attack_proc_mem, os.getpid())
    expect_clean(b, exc)
    assert result == errno.ENOENT


@pytest.mark.parametrize("level", LEVELS)
def test_kill_of_the_host_process(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    result, exc = b.run(attack_kill_host, os.getpid())
    expect_clean(b, exc)
    assert result["host_pid"] == errno.ESRCH
    assert result["init"] in (0, errno.EPERM)  # pid 1 of the sandbox ignores it either way
    assert _alive(os.getpid())
    assert b.run(attack_connect, 1)[1] is None  # the worker and its init survived


@pytest.mark.parametrize("level", LEVELS)
def test_setsid_double_fork_daemon_does_not_survive(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    inode, exc = b.run(attack_daemon)
    expect_clean(b, exc)
    assert len(procs_in_pidns(inode)) >= 3  # init, worker, daemon
    b.sb.close()
    assert wait_pidns_empty(inode) == []


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", sorted(SYSCALL_ATTACKS))
def test_escape_syscalls_through_ctypes(level: str, name: str, box: Callable[..., Box]) -> None:
    from glsandbox_kernel.confinement.seccomp import syscall_number

    b = box(level)
    nr_name, args = SYSCALL_ATTACKS[name]
    nr = syscall_number(nr_name)
    assert nr is not None
    result, exc = b.run(attack_syscall, name, nr, args)
    expect_violation(b, result, exc, escape=True, syscall=nr_name)
    if not b.enforcing:
        assert result == errno.EPERM


@pytest.mark.parametrize("level", LEVELS)
def test_tiocsti(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    result, exc = b.run(attack_tiocsti)
    v = expect_violation(b, result, exc, escape=True, syscall="ioctl")
    assert "TIOCSTI" in v["detail"]
    if not b.enforcing:
        assert result == errno.EPERM


@pytest.mark.parametrize("level", LEVELS)
def test_execve(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    result, exc = b.run(attack_exec)
    if level == "strict":
        v = expect_violation(b, result, exc, escape=False, syscall="execve")
        assert v["kind"] == "exec" and v["path"] == "/bin/true"
    else:
        expect_clean(b, exc)
        assert result == 0


@pytest.mark.parametrize("level", LEVELS)
def test_seed_escape_tool(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    result, exc = b.run(seed_escape_attempt)
    v = expect_violation(b, result, exc, escape=True, syscall="execve")
    assert os.path.basename(v["path"]) == "ptrace"
    if not b.enforcing:
        assert isinstance(exc, PermissionError)  # denied, and the call went on to report it


def test_seed_summary_escape_test_as_written() -> None:
    """The seed summary's test, with only the import line changed."""
    from glsandbox_kernel import OSSandbox, OSSandboxConfig, SandboxEscapeError

    config = OSSandboxConfig(detect_escape_attempts=True, isolation_type=IsolationType.NAMESPACE)

    def escape_attempt():  # type: ignore[no-untyped-def]

        subprocess.run(["ptrace", "attach", str(os.getpid())])

    with pytest.raises(SandboxEscapeError):
        with OSSandbox(config) as sandbox:
            sandbox.execute(escape_attempt)


# ---------------------------------------------------------------------------
# CHROOT: the same kind of attacks in a given root filesystem (root only; rootfs: tests/conftest.py)


@pytest.mark.skipif(not IS_ROOT or INNER, reason="the CHROOT backend needs root")
@pytest.mark.parametrize("level", ["strict", "moderate"])
def test_chroot_backend_attacks(level: str, box: Callable[..., Box], rootfs: str) -> None:
    sysdirs = tuple(
        d for d in ("/usr", "/lib", "/lib64", "/bin", "/sbin") if os.path.isdir(d) and not os.path.islink(d)
    )
    fs = FilesystemConfig(root=rootfs, readonly_paths=sysdirs)
    b = box(level, isolation_type=IsolationType.CHROOT, filesystem=fs)
    result, exc = b.run(attack_read_secrets, ["/etc/shadow", "/root/.bashrc", "/etc/passwd"])
    expect_clean(b, exc)
    assert result["/etc/shadow"] == errno.ENOENT and result["/root/.bashrc"] == errno.ENOENT
    assert "nobody" in result["/etc/passwd"]  # the given root's own /etc
    result, exc = b.run(attack_write_outside, ["/etc/pwned", "/usr/pwned", "/tmp/work/ok"])
    assert result["/tmp/work/ok"] == 0 and result["/etc/pwned"] in (errno.EROFS, errno.EACCES)
    assert not os.path.exists(os.path.join(rootfs, "etc", "pwned"))
    result, exc = b.run(attack_ptrace_host, os.getpid())
    expect_violation(b, result, exc, escape=True, syscall="ptrace")
    result, exc = b.run(attack_kill_host, os.getpid())
    assert result["host_pid"] == errno.ESRCH
    inode, exc = b.run(attack_daemon)
    b.sb.close()
    assert wait_pidns_empty(inode) == []
    assert not os.path.exists(os.path.join(rootfs, "tmp", "work"))  # the root was never written to


def test_chroot_without_a_root_says_why(box: Callable[..., Box]) -> None:
    if not IS_ROOT or INNER:
        from glsandbox_kernel.backends.chroot import ChrootBackend

        ok, why = ChrootBackend.available()
        assert not ok and "root" in why
        return
    from glsandbox_kernel import BackendUnavailableError

    b = box("moderate", isolation_type=IsolationType.CHROOT)
    _result, exc = b.run(attack_connect, 1)
    assert isinstance(exc, BackendUnavailableError) and "FilesystemConfig.root" in str(exc)


# ---------------------------------------------------------------------------
# the whole battery again as an unprivileged user


@pytest.mark.unprivileged
@pytest.mark.timeout(700)  # the whole rerun: above the inner run's own bound
def test_escape_battery_as_unprivileged_user() -> None:
    # HOME is a blocked path, so the fake home secret is tested too
    proc = rerun_as_unprivileged(__file__, "-k", "not unprivileged_user", timeout=600, home="/root/home-65534")
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


def _which(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None
