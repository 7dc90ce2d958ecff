"""Escape attempts and the network policy in CONTAINER (runc) and GVISOR (runsc).

Real attacks run as sandboxed code through the public API; the tests assert
what the kernel answered inside (the errno), what the trusted side recorded
(the exception the caller got, ``metrics``, the audit log, whose chain must
verify) and that no container is left. Under runc the host's seccomp
supervisor sees each attempt (``trusted: True``, the same records as
NAMESPACE); gVisor has no seccomp user notifications, so there the attempt
is denied inside by the sentry, and what the sandbox reports of itself is
recorded as ``trusted: False`` (the rest is unseen, and the backend says so).
The network tests send traffic only to servers they start on the host's
127.0.0.1; a blocked address is tested by the proxy's decision, made
before any connection. Skipped, with the reason, when Docker (or runsc) is
not usable here.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import (
    IsolationType,
    NetworkConfig,
    OSSandbox,
    SandboxEscapeError,
    SandboxViolationError,
    create_config_by_level,
)
from glsandbox_kernel.audit.verify import read_jsonl, verify_file
from glsandbox_kernel.backends.container import ContainerBackend, flush_removals
from glsandbox_kernel.backends.container import settings as ctr_settings
from glsandbox_kernel.backends.container import warm as docker_pool
from glsandbox_kernel.backends.gvisor import GVisorBackend

from ..conftest import HostHello as _Hello

cloudpickle.register_pickle_by_value(sys.modules[__name__])

CONTAINER, GVISOR = IsolationType.CONTAINER, IsolationType.GVISOR
_OK = {CONTAINER: ContainerBackend.available(), GVISOR: GVisorBackend.available()}
pytestmark = [pytest.mark.container]
LEVELS = ["strict", "moderate"]


@pytest.fixture(params=[CONTAINER, GVISOR], ids=["container", "gvisor"])
def isolation(request: pytest.FixtureRequest) -> IsolationType:
    iso: IsolationType = request.param
    ok, why = _OK[iso]
    if not ok:
        pytest.skip(f"{iso.value} backend unavailable here: {why}")
    return iso


def supervised(iso: IsolationType) -> bool:
    """Whether the host supervisor sees this backend's syscalls (runc with user notifications)."""
    return ctr_settings.supervised(ctr_settings.RUNSC if iso is GVISOR else None)


def _ours() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=glsandbox=1", "--filter", f"label=glsandbox.host_pid={os.getpid()}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


class Box:
    """One container sandbox under attack, with its audit file."""

    def __init__(self, level: str, iso: IsolationType, audit_path: str, **overrides: Any) -> None:
        self.config = create_config_by_level(level, isolation_type=iso, audit_log_path=audit_path, **overrides)
        self.audit_path = audit_path
        self.iso = iso
        self.sb = OSSandbox(self.config)
        self.enforcing = self.config.sandbox_mode.value == "enforcing"

    def run(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, BaseException | None]:
        try:
            return self.sb.execute(fn, *args), None
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            return None, exc

    def last(self) -> dict[str, Any]:
        return [r for r in read_jsonl(self.audit_path) if r["event_type"] not in ("session_start", "fallback")][-1]


@pytest.fixture
def box(tmp_path: Any, isolation: IsolationType) -> Iterator[Callable[..., Box]]:
    docker_pool.set_pool_size(0)
    made: list[Box] = []

    def make(level: str, **overrides: Any) -> Box:
        b = Box(level, isolation, str(tmp_path / f"audit-{len(made)}.jsonl"), **overrides)
        made.append(b)
        return b

    yield make
    for b in made:
        b.sb.close()
        result = verify_file(b.audit_path)
        assert result.ok, result
    docker_pool.set_pool_size(None)
    assert flush_removals(30)
    assert _ours() == [], "containers left behind"


def expect_denied(
    b: Box, result: Any, exc: BaseException | None, *, escape: bool, syscall: str, reported: bool = False
) -> None:
    """runc: recorded by the supervisor (``trusted: True``) and the call failed.

    gVisor: denied inside by the sentry; what the sandbox's bootstrap reports
    of itself (``reported``: exec attempts, ctypes lookups of escape-class
    functions) is recorded as ``trusted: False``, anything else is unseen.
    """
    seen = supervised(b.iso) or reported
    desc = b.sb.session.worker.describe()  # type: ignore[union-attr]
    if not seen:
        assert not isinstance(exc, SandboxViolationError), exc
        assert b.sb.metrics.violations_detected == 0
        assert desc["escape_detection"].startswith("untrusted: the sandbox's own reports")
        return
    cls = SandboxEscapeError if escape else SandboxViolationError
    assert isinstance(exc, cls), f"expected {cls.__name__}, got {exc!r}"
    m = b.sb.metrics
    assert m.violations_detected >= 1 and (m.escape_attempts >= 1) == escape
    rec = b.last()
    assert rec["event_type"] == ("escape_attempt" if escape else "violation")
    found = [v for v in rec["violations"] if v.get("syscall") == syscall or syscall in str(v.get("detail"))]
    assert found, rec["violations"]
    v = found[0]
    assert v["action"] == "denied" and v["escape"] is escape and v["container_id"]
    if supervised(b.iso):
        assert v["trusted"] is True and v["source"] == "seccomp-supervisor"
    else:
        assert v["trusted"] is False and v["source"].startswith("sandbox-report")


# -- attacks (they run inside the container) ------------------------------------------
def attack_ptrace(pid: int) -> int:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        return ctypes.get_errno()
    return 0


def attack_syscall(nr: int, args: tuple[int, ...]) -> int:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(nr, *(ctypes.c_long(a) for a in args)) < 0:
        return ctypes.get_errno()
    return 0


def attack_exec() -> Any:
    import subprocess

    try:
        return subprocess.run(["/bin/true"], check=False).returncode
    except OSError as exc:
        return exc.errno


def seed_escape_attempt() -> Any:
    import os
    import subprocess

    try:
        subprocess.run(["ptrace", "attach", str(os.getpid())])
    except OSError as exc:
        return exc.errno
    return 0


SYSCALL_ATTACKS: dict[str, tuple[int, ...]] = {
    "mount": (0, 0, 0, 0, 0),
    "unshare": (0x10000000,),
    "bpf": (0, 0, 0),
    "keyctl": (0, 0, 0),
    "userfaultfd": (0,),
    "io_uring_setup": (1, 0),
}


# -- the battery --------------------------------------------------------------------------
@pytest.mark.parametrize("level", LEVELS)
def test_ptrace_of_the_containers_init(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    result, exc = b.run(attack_ptrace, 1)
    expect_denied(b, result, exc, escape=True, syscall="ptrace", reported=True)
    if exc is None:
        assert result == errno.EPERM


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", sorted(SYSCALL_ATTACKS))
def test_escape_syscalls_through_ctypes(level: str, name: str, box: Callable[..., Box]) -> None:
    from glsandbox_kernel.confinement.seccomp import syscall_number

    b = box(level)
    nr = syscall_number(name)
    assert nr is not None
    result, exc = b.run(attack_syscall, nr, SYSCALL_ATTACKS[name])
    expect_denied(b, result, exc, escape=True, syscall=name)
    if exc is None:
        assert result == errno.EPERM


@pytest.mark.parametrize("level", LEVELS)
def test_execve_denied_at_strict_only(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    result, exc = b.run(attack_exec)
    if level == "strict":
        expect_denied(b, result, exc, escape=False, syscall="execve", reported=True)
        v = next(v for v in b.last()["violations"] if v["kind"] == "exec")
        assert v["path"] == "/bin/true"
    else:
        assert exc is None and result == 0
        assert b.sb.metrics.violations_detected == 0


@pytest.mark.parametrize("level", LEVELS)
def test_seed_escape_tool(level: str, box: Callable[..., Box]) -> None:
    b = box(level)
    result, exc = b.run(seed_escape_attempt)
    expect_denied(b, result, exc, escape=True, syscall="execve", reported=True)
    v = next(v for v in b.last()["violations"] if v["kind"] == "exec")
    assert os.path.basename(v["path"]) == "ptrace"


def test_seed_summary_escape_test_as_written(isolation: IsolationType) -> None:
    """The seed summary's test, with only the import line and the isolation changed."""
    from glsandbox_kernel import OSSandboxConfig

    docker_pool.set_pool_size(0)
    config = OSSandboxConfig(detect_escape_attempts=True, isolation_type=isolation)

    def escape_attempt():  # type: ignore[no-untyped-def]
        import subprocess

        subprocess.run(["ptrace", "attach", str(os.getpid())])

    try:
        with pytest.raises(SandboxEscapeError):
            with OSSandbox(config) as sandbox:
                sandbox.execute(escape_attempt)
    finally:
        docker_pool.set_pool_size(None)
    assert flush_removals(30) and _ours() == []


def test_gvisor_kernel_denies_exec_even_when_the_report_hook_is_bypassed() -> None:
    """The audit hook is the sandbox's own (untrusted); the sentry's filter is what denies."""
    ok, why = _OK[GVISOR]
    if not ok:
        pytest.skip(f"gvisor backend unavailable here: {why}")

    def raw_execve() -> int:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        argv = (ctypes.c_char_p * 2)(b"/bin/true", None)
        libc.execve(b"/bin/true", argv, None)  # returns only on failure
        return ctypes.get_errno()

    docker_pool.set_pool_size(0)
    try:
        with OSSandbox(create_config_by_level("strict", isolation_type=GVISOR)) as sb:
            assert sb.execute(raw_execve) == errno.EPERM
            assert sb.metrics.violations_detected == 0  # unseen: no audit event for a foreign call
    finally:
        docker_pool.set_pool_size(None)
    assert flush_removals(30) and _ours() == []


def test_detection_off_still_denies(isolation: IsolationType) -> None:
    """``detect_escape_attempts=False``: no supervisor, no reports, but the filter still says EPERM."""
    docker_pool.set_pool_size(0)
    config = create_config_by_level("strict", isolation_type=isolation, detect_escape_attempts=False)
    try:
        with OSSandbox(config) as sb:
            assert sb.execute(attack_ptrace, 1) == errno.EPERM
            assert sb.execute(attack_exec) == errno.EPERM
            assert sb.metrics.violations_detected == 0
            assert sb.session.worker.supervisor is None  # type: ignore[union-attr]
            assert sb.session.worker.reports is None  # type: ignore[union-attr]
    finally:
        docker_pool.set_pool_size(None)
    assert flush_removals(30) and _ours() == []


# -- the network policy: the host proxy behind a socket bound into a network-none container ------
# (host_server: tests/conftest.py)


def attack_http(url: str) -> Any:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return len(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code


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


def proxy_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy")}


def expect_network_violation(b: Box, exc: BaseException | None, host: str) -> dict[str, Any]:
    """The proxy (host side, trusted under runc AND gVisor) refused and recorded it."""
    if b.enforcing:
        assert isinstance(exc, SandboxViolationError) and not isinstance(exc, SandboxEscapeError), exc
    else:
        assert exc is None, exc
    rec = b.last()
    assert rec["event_type"] == "violation"
    v = next(v for v in rec["violations"] if v["kind"] == "network")
    assert v["trusted"] is True and v["source"] == "network-proxy" and v["host"] == host
    assert b.sb.metrics.violations_detected >= 1 and b.sb.metrics.escape_attempts == 0
    return v


def test_strict_has_no_network_and_no_proxy(box: Callable[..., Box], host_server: tuple[int, list[Any]]) -> None:
    port, accepted = host_server
    b = box("strict")
    result, exc = b.run(attack_connect, port)
    assert exc is None and result == errno.ECONNREFUSED  # its own loopback: nothing listens there
    assert b.run(proxy_env) == ({}, None)
    assert accepted == [] and b.sb.metrics.network_bytes_received is None  # no proxy: not measured, not 0
    assert b.sb.session.worker.describe()["network"] == "none"  # type: ignore[union-attr]


@pytest.mark.parametrize("level", ["moderate", "lenient"])
def test_allowlist_allow_and_deny_through_the_proxy(
    level: str, box: Callable[..., Box], host_server: tuple[int, list[Any]]
) -> None:
    port, accepted = host_server
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        denied = other.getsockname()[1]
        b = box(level, network=NetworkConfig(allow_network=True, allowed_hosts=(f"127.0.0.1:{port}",)))
        result, exc = b.run(attack_http, f"http://127.0.0.1:{port}/")
        assert exc is None and result == len(_Hello.body) and len(accepted) == 1
        m = b.sb.metrics  # counted by the host proxy
        assert m.network_bytes_received is not None and m.network_bytes_received >= len(_Hello.body)
        assert m.network_bytes_sent is not None and m.network_bytes_sent > 0
        assert m.violations_detected == 0
        result, exc = b.run(attack_http, f"http://127.0.0.1:{denied}/")
        v = expect_network_violation(b, exc, "127.0.0.1")
        assert v["port"] == denied and "not in allowed_hosts" in v["detail"]
        if not b.enforcing:
            assert result == 403
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.accept()  # the proxy decided before connecting
        result, exc = b.run(attack_connect, port)  # no way around the proxy: the container's own loopback
        assert result == errno.ECONNREFUSED and len(accepted) == 1


def test_lenient_any_host_but_metadata(box: Callable[..., Box], host_server: tuple[int, list[Any]]) -> None:
    port, accepted = host_server
    b = box("lenient")
    assert b.config.network.mode == "any"
    env, exc = b.run(proxy_env)
    assert exc is None and env.get("HTTP_PROXY", "").startswith("http://127.0.0.1:")
    # Decided by the proxy before any connection: no traffic leaves for these.
    result, exc = b.run(attack_http, "http://169.254.169.254/latest/meta-data/")
    v = expect_network_violation(b, exc, "169.254.169.254")
    assert result == 403 and "169.254.169.254" in v["detail"]
    result, exc = b.run(attack_http, f"http://127.0.0.1:{port}/")  # loopback only when listed
    expect_network_violation(b, exc, "127.0.0.1")
    assert result == 403 and accepted == []
    assert "any host but metadata" in b.sb.session.worker.describe()["network"]  # type: ignore[union-attr]
