"""What BASIC and NAMESPACE enforce of the network policy and of /dev/shm, asserted from the host.

Issue 11, items 2 and 8. A real TCP server on the host's loopback (started
here) must see no connection from a sandbox that was not allowed to reach
it, at every level, on every zygote backend; BASIC, which has no network
namespace, refuses any config that allows network (also when reached by
``fallback_to_basic``). BASIC's worker may not use the host's shared
/dev/shm; NAMESPACE's is private. Skips name the missing host feature.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.namespace import NamespaceBackend
from glsandbox_kernel.config import NetworkConfig, OSSandboxConfig, SandboxMode
from glsandbox_kernel.confinement import landlock, seccomp
from glsandbox_kernel.exceptions import BackendUnavailableError, SandboxViolationError

# The probes below travel by value: the sandbox must not import this module (its top level probes the host).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

NS_OK, NS_WHY = NamespaceBackend.available()
SECCOMP_OK, SECCOMP_WHY = seccomp.supported()
LANDLOCK_ABI = landlock.landlock_abi()

needs_ns = pytest.mark.skipif(not NS_OK, reason=f"namespace backend unavailable: {NS_WHY}")
needs_seccomp = pytest.mark.skipif(not SECCOMP_OK, reason=f"seccomp unavailable: {SECCOMP_WHY}")
needs_landlock = pytest.mark.skipif(LANDLOCK_ABI == 0, reason="kernel has no Landlock (BASIC's /dev/shm rule)")

#: (level, network) pairs the issue names: STRICT (none), MODERATE with an allowlist that
#: does not name the service, LENIENT (any host).
POLICIES = {
    "strict": NetworkConfig(allow_network=False),
    "moderate": NetworkConfig(allow_network=True, allowed_hosts=("example.invalid:443",)),
    "lenient": NetworkConfig(allow_network=True),
}


@pytest.fixture
def loopback_service() -> Iterator[dict[str, Any]]:
    """A host service on 127.0.0.1 (and ::1 where it exists) that never accepts: any
    connection attempt that got through stays queued in the backlog, where the test sees it."""
    socks: dict[str, socket.socket] = {}
    v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    v4.bind(("127.0.0.1", 0))
    v4.listen(16)
    socks["127.0.0.1"] = v4
    port = v4.getsockname()[1]
    with contextlib.suppress(OSError):
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::1", port))
        v6.listen(16)
        socks["::1"] = v6
    yield {"port": port, "hosts": list(socks), "socks": socks}
    for s in socks.values():
        s.close()


def connections_seen(service: dict[str, Any]) -> list[str]:
    """HOST side: the listeners someone connected to (a queued connection makes them readable)."""
    seen = []
    for host, s in service["socks"].items():
        r, _, _ = select.select([s], [], [], 0.2)
        if r:
            seen.append(host)
    return seen


def reach(hosts: list[str], port: int) -> dict[str, Any]:
    """SANDBOX side: try every way to the host service: direct TCP, and the proxy if there is one."""
    import os
    import socket

    out: dict[str, Any] = {}
    for host in hosts:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
        except OSError as exc:
            out[f"socket {host}"] = exc.errno
            continue
        s.settimeout(3)
        try:
            s.connect((host, port))
            out[f"direct {host}"] = "connected"
        except OSError as exc:
            out[f"direct {host}"] = exc.errno
        finally:
            s.close()
    proxy = os.environ.get("GLSANDBOX_PROXY")
    if proxy:
        phost, pport = proxy.rsplit(":", 1)
        for host in hosts:
            target = f"[{host}]" if ":" in host else host
            with socket.create_connection((phost, int(pport)), timeout=5) as s:
                s.sendall(f"CONNECT {target}:{port} HTTP/1.1\r\nHost: {target}:{port}\r\n\r\n".encode())
                out[f"proxy {host}"] = s.recv(64).decode(errors="replace").split("\r\n")[0]
    return out


def config(level: str, isolation: IsolationType, **kw: Any) -> OSSandboxConfig:
    return create_config_by_level(level, isolation_type=isolation, network=POLICIES[level], **kw)


# ---------------------------------------------------------------------------
# network


@needs_seccomp
def test_basic_without_network_reaches_no_host_service(loopback_service: dict[str, Any]) -> None:
    cfg = config("strict", IsolationType.BASIC)
    with pytest.raises(SandboxViolationError) as info, OSSandbox(cfg) as box:
        box.execute(reach, loopback_service["hosts"], loopback_service["port"])
    details = {v["detail"] for v in info.value.violations}
    assert "socket(AF_INET)" in details  # denied by seccomp and recorded by the supervisor (trusted)
    assert all(v["trusted"] and v["kind"] == "network" for v in info.value.violations)
    assert connections_seen(loopback_service) == []
    permissive = cfg.replace(sandbox_mode=SandboxMode.PERMISSIVE)  # recorded, not failed: what the call saw
    with OSSandbox(permissive) as box:
        out = box.execute(reach, loopback_service["hosts"], loopback_service["port"])
    assert out and all(v in (errno.EPERM, errno.EACCES) for v in out.values()), out
    assert connections_seen(loopback_service) == []


@pytest.mark.parametrize("level", ["moderate", "lenient"])
def test_basic_refuses_a_network_policy_it_cannot_enforce(level: str, loopback_service: dict[str, Any]) -> None:
    cfg = config(level, IsolationType.BASIC)
    with pytest.raises(BackendUnavailableError) as info, OSSandbox(cfg) as box:
        box.execute(reach, loopback_service["hosts"], loopback_service["port"])
    text = str(info.value)
    assert info.value.backend == "basic"
    assert "allow_network=True" in text and "namespace" in text  # what it cannot enforce, and the fix
    if level == "moderate":
        assert "example.invalid:443" in text
    assert connections_seen(loopback_service) == []


@pytest.mark.parametrize("level", ["moderate", "lenient"])
def test_fallback_to_basic_does_not_drop_the_network_policy(
    level: str, loopback_service: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """VM made unavailable (no guest image), so this config falls back to BASIC, which must refuse it."""
    monkeypatch.setenv("GLSANDBOX_VM_IMAGE", str(tmp_path))
    cfg = config(level, IsolationType.VM, fallback_to_basic=True)
    with pytest.raises(BackendUnavailableError, match="allow_network=True") as info, OSSandbox(cfg) as box:
        box.execute(reach, loopback_service["hosts"], loopback_service["port"])
    assert info.value.backend == "basic"
    assert connections_seen(loopback_service) == []
    strict = config("strict", IsolationType.VM, fallback_to_basic=True)  # what BASIC can enforce still runs
    with OSSandbox(strict) as box:
        assert box.execute(os.getpid) > 0


@needs_ns
@pytest.mark.namespace
@pytest.mark.parametrize("level", ["strict", "moderate", "lenient"])
def test_namespace_reaches_no_host_service_it_was_not_allowed(level: str, loopback_service: dict[str, Any]) -> None:
    # PERMISSIVE: the proxy's refusals are recorded without failing the call, so the call's view comes back.
    cfg = config(level, IsolationType.NAMESPACE, sandbox_mode=SandboxMode.PERMISSIVE)
    with OSSandbox(cfg) as box:
        out = box.execute(reach, loopback_service["hosts"], loopback_service["port"])
    for host in loopback_service["hosts"]:
        # its own, empty network namespace: the host's loopback is not there
        assert out[f"direct {host}"] in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EADDRNOTAVAIL), out
        if level != "strict":
            assert out[f"proxy {host}"].startswith("HTTP/1.1 403"), out  # the proxy refused it
    if level == "strict":
        assert not any(k.startswith("proxy") for k in out)  # no proxy at all
    assert connections_seen(loopback_service) == []


# ---------------------------------------------------------------------------
# /dev/shm


def shm_probe(name: str) -> dict[str, Any]:
    """SANDBOX side: write a file in /dev/shm, list it, and try POSIX shared memory."""
    import os
    from multiprocessing import shared_memory

    out: dict[str, Any] = {}
    try:
        with open(f"/dev/shm/{name}", "w") as fh:
            fh.write("left behind?")
        out["write"] = "ok"
    except OSError as exc:
        out["write"] = exc.errno
    try:
        out["list"] = sorted(os.listdir("/dev/shm"))
    except OSError as exc:
        out["list"] = exc.errno
    try:
        shm = shared_memory.SharedMemory(name=f"{name}-posix", create=True, size=4096)
        shm.close()
        out["posix"] = "ok"
    except OSError as exc:
        out["posix"] = exc.errno
    return out


@needs_landlock
def test_basic_does_not_share_dev_shm() -> None:
    host_file = f"/dev/shm/glsandbox-host-{uuid.uuid4().hex[:8]}"
    with open(host_file, "w") as fh:  # another process's shared memory
        fh.write("host secret")
    name = f"glsandbox-test-{uuid.uuid4().hex[:8]}"
    try:
        cfg = create_config_by_level("moderate", isolation_type=IsolationType.BASIC)
        with OSSandbox(cfg) as first:
            out = first.execute(shm_probe, name)
        with OSSandbox(cfg) as second:
            seen = second.execute(shm_probe, name + "-b")
    finally:
        os.unlink(host_file)
    assert out["write"] == errno.EACCES and out["posix"] == errno.EACCES, out
    assert seen["list"] == errno.EACCES, seen  # neither the host's nor another session's files are visible
    left = [n for n in os.listdir("/dev/shm") if n.startswith(name)]
    assert left == []  # nothing was left behind on the host


@needs_ns
@pytest.mark.namespace
def test_namespace_dev_shm_is_private_and_gone_after_close() -> None:
    name = f"glsandbox-test-{uuid.uuid4().hex[:8]}"
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE)
    with OSSandbox(cfg) as first:
        out = first.execute(shm_probe, name)
        with OSSandbox(cfg) as second:
            seen = second.execute(shm_probe, name + "-b")
    assert out["write"] == "ok" and out["posix"] == "ok", out
    assert name in out["list"]
    assert name not in seen["list"] and f"{name}-posix" not in seen["list"], seen  # another session: not there
    assert [n for n in os.listdir("/dev/shm") if n.startswith(name)] == []  # never on the host
