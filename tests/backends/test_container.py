"""CONTAINER and GVISOR backends against the real Docker daemon.

Every probe runs inside a real container and asserts what the kernel did
(errno of the syscall, contents of /proc), not how the backend is written.
The engine's behaviour tests run against both backends (fixture
``isolation``); GVISOR runs the same container under gVisor's runsc.
Skipped, with the reason, only when the Docker daemon is unreachable (all)
or runsc is not registered with it (the gvisor cases); set
``GLSANDBOX_REQUIRE_DOCKER=1`` (CI, which installs and registers runsc) to
turn either skip into a failure.
After every test no container of this test process may remain
(``docker ps -a --filter label=glsandbox=1``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import (
    BackendUnavailableError,
    IsolationType,
    OSSandbox,
    OSSandboxConfig,
    ResourceLimits,
    SandboxConfigError,
    SandboxMemoryError,
    SandboxMode,
    SandboxTimeoutError,
    procfs,
)
from glsandbox_kernel.backends import container as ctr
from glsandbox_kernel.backends.base import WorkerProcess
from glsandbox_kernel.backends.container import (
    LABEL_HOST_PID,
    ContainerBackend,
    ContainerWorker,
    container_settings,
    docker_api,
    images,
)
from glsandbox_kernel.backends.container import settings as ctr_settings
from glsandbox_kernel.backends.container import warm as docker_pool
from glsandbox_kernel.backends.gvisor import GVisorBackend
from glsandbox_kernel.config import FilesystemConfig, NetworkConfig, WhitelistConfig
from glsandbox_kernel.confinement.rlimits import SIGNALS_PENDING_MAX
from glsandbox_kernel.confinement.seccomp import packed_filter

pytestmark = [pytest.mark.container]

# This module is not importable inside the container (only the package and
# site-packages are mounted): ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CONTAINER = IsolationType.CONTAINER
GVISOR = IsolationType.GVISOR
MiB = 1024 * 1024
REQUIRE = os.environ.get("GLSANDBOX_REQUIRE_DOCKER") == "1"


def _daemon_problem() -> str | None:
    """Why the container tests cannot run here, or None when they can."""
    try:
        ctr.docker_module()
    except BackendUnavailableError as exc:
        return exc.reason
    info, why = ctr.daemon_info()
    return None if info is not None else why


_PROBLEM = _daemon_problem()
if _PROBLEM is not None:
    if REQUIRE:
        raise RuntimeError(f"GLSANDBOX_REQUIRE_DOCKER=1 but Docker is unusable: {_PROBLEM}")
    print(f"\nskipping container tests: {_PROBLEM}", file=sys.stderr)
    pytestmark.append(pytest.mark.skip(reason=f"Docker daemon unreachable: {_PROBLEM}"))


def _gvisor_problem() -> str | None:
    """Why the gvisor cases cannot run here (runsc not registered as needed), or None."""
    if _PROBLEM is not None:
        return _PROBLEM
    ok, reason = GVisorBackend.available()
    return None if ok else reason


_GVISOR_PROBLEM = _gvisor_problem()
if _PROBLEM is None and _GVISOR_PROBLEM is not None:
    print(f"\n{'FAILING' if REQUIRE else 'skipping'} gvisor container tests: {_GVISOR_PROBLEM}", file=sys.stderr)


@pytest.fixture(params=[CONTAINER, GVISOR], ids=["container", "gvisor"])
def isolation(request: pytest.FixtureRequest) -> IsolationType:
    """Each engine test runs against CONTAINER (runc) and GVISOR (runsc)."""
    iso: IsolationType = request.param
    if iso is GVISOR and _GVISOR_PROBLEM is not None:
        if REQUIRE:
            pytest.fail(f"GLSANDBOX_REQUIRE_DOCKER=1 but gVisor is unusable: {_GVISOR_PROBLEM}")
        pytest.skip(f"runsc not usable: {_GVISOR_PROBLEM}")
    return iso


def backend_class(isolation: IsolationType) -> type[ContainerBackend]:
    return GVisorBackend if isolation is GVISOR else ContainerBackend


def our_containers(all_states: bool = True) -> list[str]:
    """Ids of containers made by this process (docker CLI, by label)."""
    cmd = [
        "docker",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        "label=glsandbox=1",
        "--filter",
        f"label={LABEL_HOST_PID}={os.getpid()}",
    ]
    if all_states:
        cmd.insert(2, "-a")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.fixture(autouse=True)
def no_leftover_containers() -> Iterator[None]:
    """Pools off unless a test turns them on; nothing of ours remains afterwards."""
    docker_pool.set_pool_size(0)
    yield
    docker_pool.drain_all()
    assert ctr.flush_removals(30), "container removals did not finish"
    left = our_containers()
    docker_pool.set_pool_size(None)
    assert not left, f"containers left behind: {left}"


def cfg(isolation: IsolationType = CONTAINER, **kw: Any) -> OSSandboxConfig:
    kw.setdefault("execution_timeout", 30.0)
    return OSSandboxConfig(isolation_type=isolation, **kw)


def worker_of(sb: OSSandbox) -> ContainerWorker:
    worker = sb.session.worker
    assert isinstance(worker, ContainerWorker)
    return worker


def container_exists(container_id: str) -> bool:
    res = subprocess.run(["docker", "inspect", container_id], capture_output=True)
    return res.returncode == 0


# -- the probe that runs inside the container (sandbox side) ---------------------------
def inside_probe() -> dict[str, Any]:
    """Facts from inside the sandbox; escape syscalls report the errno they got."""
    import ctypes
    import errno
    import os
    import socket

    libc = ctypes.CDLL(None, use_errno=True)

    def syscall(nr: int, *args: int) -> str:
        ctypes.set_errno(0)
        r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
        if r == 0 and nr == 56:  # clone succeeded: we are the child, leave now
            libc._exit(0)
        if r >= 0:
            return "ok"
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

    facts: dict[str, Any] = {}
    facts["syscalls"] = {
        "ptrace": syscall(101, 16, 1, 0, 0),  # PTRACE_ATTACH to pid 1
        "process_vm_readv": syscall(310, 1, 0, 0, 0, 0, 0),
        "mount": syscall(165, 0, 0, 0, 0, 0),
        "umount2": syscall(166, 0, 0),
        "pivot_root": syscall(155, 0, 0),
        "unshare": syscall(272, 0x10000000),  # CLONE_NEWUSER
        "setns": syscall(308, 0, 0),
        "clone_newuser": syscall(56, 0x10000000 | 17, 0, 0, 0, 0),  # CLONE_NEWUSER|SIGCHLD
        "clone3": syscall(435, 0, 0),
        "bpf": syscall(321, 0, 0, 0),
        "perf_event_open": syscall(298, 0, 0, -1, -1, 0),
        "keyctl": syscall(250, 0, 0),
        "userfaultfd": syscall(323, 0),
        "io_uring_setup": syscall(425, 1, 0),
        "kexec_load": syscall(246, 0, 0, 0, 0),
        "init_module": syscall(175, 0, 0, 0),
        "open_by_handle_at": syscall(304, 0, 0, 0),
        "reboot": syscall(169, 0, 0, 0, 0),
        "getpid": syscall(39),
    }
    with open("/proc/self/status") as fh:
        facts["status"] = dict(line.split(":\t", 1) for line in fh.read().splitlines() if ":\t" in line)
    with open("/proc/net/dev") as fh:
        facts["interfaces"] = sorted(line.split(":")[0].strip() for line in fh.read().splitlines()[2:])
    # /var/tmp is world-writable (1777) on the root filesystem: only the
    # read-only mount can refuse (gVisor checks permissions before the
    # mount's ro flag, so a root-owned directory would give EACCES there).
    for key, path in (("root_write", "/var/tmp/glsandbox-write-test"), ("usr_write", "/usr/glsandbox-write-test")):
        try:
            with open(path, "w") as fh:
                fh.write("x")
            facts[key] = "ok"
        except OSError as exc:
            facts[key] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    with open("/proc/self/mountinfo") as fh:
        mounts = [ln.split() for ln in fh]
    facts["root_mount_opts"] = next(m[5] for m in mounts if m[4] == "/").split(",")
    facts["var_tmp_fstype"] = next((m[m.index("-") + 1] for m in mounts if m[4] == "/var/tmp"), None)
    facts["no_new_privs"] = libc.prctl(39, 0, 0, 0, 0)  # PR_GET_NO_NEW_PRIVS
    with open("/proc/version") as fh:
        facts["proc_version"] = fh.read().strip()
    facts["uname_release"] = os.uname().release
    with open(os.path.join(os.getcwd(), "scratch"), "w") as fh:
        fh.write("tmpfs working dir is writable")
    facts["cwd"] = os.getcwd()
    facts["uid"], facts["gid"] = os.getuid(), os.getgid()
    facts["env"] = dict(os.environ)
    facts["docker_sock"] = any(os.path.exists(p) for p in ("/var/run/docker.sock", "/run/docker.sock"))
    try:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        socket.create_connection(srv.getsockname(), timeout=2).close()
        facts["loopback"] = "ok"
    except OSError as exc:
        facts["loopback"] = repr(exc)
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=2).close()
        facts["outside"] = "connected"
    except OSError as exc:
        facts["outside"] = errno.errorcode.get(exc.errno or 0, repr(exc))
    return facts


# -- settings builder (no daemon needed beyond the module-level check) ----------------------
def test_settings_builder_is_shared_and_locked_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret")
    config = OSSandboxConfig(
        isolation_type=CONTAINER,
        limits=ResourceLimits(
            memory_limit_bytes=128 * MiB,
            cpu_percent_limit=50,
            max_processes=32,
            max_open_files=64,
            max_file_size_bytes=8 * MiB,
            disk_quota_bytes=32 * MiB,
        ),
        whitelist=WhitelistConfig(env=(("MY_SETTING", "1"),)),
    )
    sock_dir = str(tmp_path)
    s = container_settings(config, session_id="sess-1", socket_dir=sock_dir)
    assert s["network_mode"] == "none" and s["network_disabled"] is True
    assert s["read_only"] is True
    assert s["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in s["security_opt"]
    seccomp = [o for o in s["security_opt"] if o.startswith("seccomp=")]
    profile = json.loads(seccomp[0].split("=", 1)[1])
    denied = profile["syscalls"][0]
    assert denied["action"] == "SCMP_ACT_ERRNO" and denied["errnoRet"] == 1
    # Two layers: the OCI profile and the project's own filter, which the
    # sandbox-side bootstrap loads (the same section NAMESPACE plans). Where
    # the host supervisor answers (runc on a kernel with user notifications),
    # the escape class is left to the bootstrap's notifying filter: an ERRNO
    # in the profile would win over USER_NOTIF and hide it.
    section = ctr_settings.seccomp_of(s)
    assert section["enabled"] and section["deny_exec"] is False  # MODERATE
    assert section["notify"] is ctr_settings.supervised(None)
    escape = ("ptrace", "mount", "unshare", "setns", "bpf", "keyctl", "userfaultfd", "io_uring_setup")
    escape += ("kexec_load", "init_module", "open_by_handle_at", "reboot")
    for name in escape:
        assert (name in denied["names"]) is not section["notify"], name
    for name in ("clock_settime", "kcmp", "syslog", "name_to_handle_at"):  # never notified: always in the profile
        assert name in denied["names"]
    assert s["command"][:5] == ["python3", "-s", "-E", "-c", ctr_settings.BOOTSTRAP_CODE]
    assert "sys.path[0] = '/opt/glsandbox/site/glsandbox_kernel/worker'" in ctr_settings.BOOTSTRAP_CODE
    strict = container_settings(config.replace(security_level="strict"), session_id="sess-1", socket_dir=str(tmp_path))
    assert ctr_settings.seccomp_of(strict)["deny_exec"] is True
    assert s["user"] == "65534:65534"
    assert s["mem_limit"] == s["memswap_limit"] == 128 * MiB
    assert s["nano_cpus"] == 500_000_000
    assert s["pids_limit"] == 32
    ulimits = {u["name"]: u["soft"] for u in s["ulimits"]}
    assert ulimits["fsize"] == 8 * MiB and ulimits["core"] == 0
    assert ulimits["sigpending"] == SIGNALS_PENDING_MAX  # queued signals count per uid machine-wide
    # No nofile ulimit: the bootstrap sets the file limit after the hello (ETOOMANYREFS, see rlimits)
    assert "nofile" not in ulimits and json.loads(s["command"][-1])["file_limit"] == 64
    # The 32 MiB disk quota is split between the three scratch tmpfs: their sum is the quota.
    assert f"size={16 * MiB}" in s["tmpfs"][s["working_dir"]] and f"size={8 * MiB}" in s["tmpfs"]["/tmp"]
    assert s["shm_size"] == 8 * MiB
    # No ptys: an empty read-only /dev/pts (each pty would count in the host's kernel.pty.nr).
    assert set(s["tmpfs"]) == {"/tmp", s["working_dir"], "/dev/pts"} and s["tmpfs"]["/dev/pts"].startswith("ro,")
    assert s["labels"]["glsandbox"] == "1" and s["labels"]["glsandbox.session"] == "sess-1"
    assert s["labels"][LABEL_HOST_PID] == str(os.getpid())
    assert "AWS_SECRET_ACCESS_KEY" not in s["environment"]
    assert s["environment"]["MY_SETTING"] == "1"
    assert s["volumes"][sock_dir] == {"bind": "/run/glsandbox", "mode": "ro"}
    assert all(v["mode"] == "ro" for v in s["volumes"].values())
    assert s["image"] == ctr.default_image()
    assert "runtime" not in s

    # GVISOR goes through the very same builder; it adds the runtime and
    # differs only where gVisor's kernel needs it: the clone3 rule (the
    # sentry has no clone3 and would answer the rule with EPERM) and the
    # process limit (RLIMIT_NPROC inside, the host pids limit a backstop
    # for the sentry's own tasks).
    g = GVisorBackend(config).settings(session_id="sess-1", socket_dir=sock_dir)
    c = ContainerBackend(config).settings(session_id="sess-1", socket_dir=sock_dir)
    assert g.pop("runtime") == "runsc"
    assert g["labels"].pop("glsandbox.backend") == "gvisor"
    assert c["labels"].pop("glsandbox.backend") == "container"
    g_profile = json.loads(g.pop("security_opt")[1].split("=", 1)[1])
    c_profile = json.loads(c.pop("security_opt")[1].split("=", 1)[1])
    # gVisor: no user notifications, so its profile holds the whole escape class.
    g_section, c_section = ctr_settings.seccomp_of(g), ctr_settings.seccomp_of(c)
    assert g_section["notify"] is False and "gVisor" in g_section["detection"]
    # One policy (confinement.seccomp.SeccompPolicy) emits both the profile and the bootstrap's BPF.
    c_policy = ctr_settings.seccomp_policy(config, None)
    assert c_profile == ctr_settings.oci_profile(c_policy) and c_policy.notify is c_section["notify"]
    # ... and the bootstrap loads that policy's program as NAMESPACE's children do, packed by the host.
    assert ctr_settings.bootstrap_spec(c)["seccomp_program"] == packed_filter(c_policy).hex()
    plain = ctr_settings.oci_profile(dataclasses.replace(c_policy, notify=False))
    # gVisor's profile: the EPERM rules only (runsc answers every rule EPERM, which would stop libc's
    # fallbacks: clone3 -> clone, posix_fallocate -> writes); the others are the bootstrap's filter's.
    assert [r for r in plain["syscalls"] if r["errnoRet"] == 1] == g_profile["syscalls"]
    assert {r["names"][0] for r in plain["syscalls"] if r["errnoRet"] != 1} >= {"clone3", "fallocate", "sendfile"}
    assert g.pop("command")[:4] == c.pop("command")[:4]
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in c_profile["syscalls"]
    assert all(r["errnoRet"] == 1 for r in g_profile["syscalls"])  # what the sentry applies anyway
    assert {"name": "nproc", "soft": 32, "hard": 32} in g.pop("ulimits")
    assert not any(u["name"] == "nproc" for u in c.pop("ulimits"))
    assert g.pop("pids_limit") == ctr.RUNSC_HOST_TASKS_BASE + ctr.RUNSC_HOST_TASKS_PER_TASK * 32
    assert c.pop("pids_limit") == 32
    assert c["tmpfs"].pop("/dev/pts") and "/dev/pts" not in g["tmpfs"]  # gVisor's ptys are the sentry's own
    assert g == c

    # The pool key follows every setting that matters, but not the session.
    a = ContainerBackend(config).pool_key()
    assert a == ContainerBackend(config).pool_key()
    assert a != ContainerBackend(config.replace(limits=ResourceLimits(memory_limit_bytes=64 * MiB))).pool_key()
    assert a != GVisorBackend(config).pool_key()


def test_worker_code_is_bound_as_a_compiled_snapshot(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The package the container imports is a copy with unchecked-hash pycs, named by its sources' digest."""
    from glsandbox_kernel.backends.container import code

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "mod.py").write_text("def f():\n    return 2\n")
    (pkg / "data.json").write_text("{}")
    monkeypatch.setattr(code.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    snap = code.worker_code_dir.__wrapped__(str(pkg), "/opt/glsandbox/site/pkg")
    assert snap != str(pkg) and os.path.basename(snap) == code.source_digest(str(pkg))
    assert oct(os.stat(os.path.dirname(snap)).st_mode & 0o777) == "0o700"  # the private root
    assert os.path.dirname(snap) == str(tmp_path / "tmp" / f"glsandbox-code-{os.getuid()}")
    assert open(os.path.join(snap, "data.json")).read() == "{}"  # non-Python files come along
    pyc = os.path.join(snap, "sub", "__pycache__", f"mod.{sys.implementation.cache_tag}.pyc")
    with open(pyc, "rb") as fh:
        head = fh.read(8)
    assert int.from_bytes(head[4:8], "little") == 0b01  # hash-based, source never checked
    assert oct(os.stat(pyc).st_mode & 0o777) == "0o644"  # the container's user reads, nobody writes
    # Another version of the sources is another snapshot; the same sources reuse it.
    assert code.worker_code_dir.__wrapped__(str(pkg), "/opt/glsandbox/site/pkg") == snap
    (pkg / "sub" / "mod.py").write_text("def f():\n    return 3\n")
    assert code.worker_code_dir.__wrapped__(str(pkg), "/opt/glsandbox/site/pkg") != snap
    # A root that is not private to this user is not used: the package is bound as it is.
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setattr(code.tempfile, "tempdir", str(other))
    (other / f"glsandbox-code-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(other / f"glsandbox-code-{os.getuid()}", 0o777)
    assert code.worker_code_dir.__wrapped__(str(pkg), "/opt/glsandbox/site/pkg") == str(pkg)


def compiled_worker_modules() -> dict[str, bool]:
    """SANDBOX side: whether the worker's modules (and the bootstrap) were loaded from a pyc on disk."""
    import os
    import sys

    names = ("bootstrap", "glsandbox_kernel.worker.loop", "glsandbox_kernel.codec", "glsandbox_kernel.protocol")
    return {
        n: bool(getattr(sys.modules.get(n), "__cached__", None) and os.path.exists(sys.modules[n].__cached__))
        for n in names
    }


def test_the_container_imports_the_worker_compiled(isolation: IsolationType) -> None:
    """No module of the worker is compiled from source in the container (read-only root, no bytecode written)."""
    with OSSandbox(cfg(isolation)) as sb:
        assert sb.execute(compiled_worker_modules) == dict.fromkeys(
            ("bootstrap", "glsandbox_kernel.worker.loop", "glsandbox_kernel.codec", "glsandbox_kernel.protocol"), True
        )


def test_settings_network_goes_through_the_host_proxy(tmp_path: Any) -> None:
    """Network none always; an allowed network is the host proxy's socket, bound read-only."""
    net = NetworkConfig(allow_network=True, allowed_hosts=("127.0.0.1:8080",))
    config = OSSandboxConfig(isolation_type=CONTAINER, network=net)
    with pytest.raises(ValueError, match="proxy"):
        container_settings(config, session_id="s", socket_dir=str(tmp_path))
    s = container_settings(config, session_id="s", socket_dir=str(tmp_path), proxy_dir="/tmp/p1")
    assert s["network_mode"] == "none" and s["network_disabled"] is True
    assert s["volumes"]["/tmp/p1"] == {"bind": "/run/glsandbox-net", "mode": "ro"}
    spec = ctr_settings.bootstrap_spec(s)
    assert spec["network"]["proxy_socket"] == "/run/glsandbox-net/proxy" and spec["network"]["mode"] == "allowlist"
    other = container_settings(config, session_id="t", socket_dir="/tmp/other", proxy_dir="/tmp/p2")
    assert ctr_settings.settings_key(s) == ctr_settings.settings_key(other)  # per-use dirs are not in the key
    none = container_settings(OSSandboxConfig(isolation_type=CONTAINER), session_id="s", socket_dir=str(tmp_path))
    assert ctr_settings.bootstrap_spec(none)["network"] is None
    assert not any(v["bind"] == "/run/glsandbox-net" for v in none["volumes"].values())


def test_settings_refuse_blocked_binds() -> None:
    config = OSSandboxConfig(isolation_type=CONTAINER, filesystem=FilesystemConfig(readonly_paths=("/var/run",)))
    with pytest.raises(SandboxConfigError, match=r"docker\.sock"):
        container_settings(config, session_id="s", socket_dir="/tmp/x")


def _daemon_with_runtimes(monkeypatch: pytest.MonkeyPatch, runtimes: dict[str, Any]) -> None:
    """Make the backends see ``docker info`` with these Runtimes (the rest is real)."""
    info, why = ctr.daemon_info()
    assert info is not None, why
    monkeypatch.setattr(docker_api, "daemon_info", lambda: (dict(info, Runtimes=runtimes), ""))


def test_gvisor_unavailable_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _daemon_with_runtimes(monkeypatch, {"runc": {"path": "runc"}})
    ok, reason = GVisorBackend.available()
    assert not ok and "runsc" in reason and "not registered" in reason and "runc" in reason
    with pytest.raises(BackendUnavailableError) as err:
        OSSandbox(OSSandboxConfig(isolation_type=IsolationType.GVISOR))
    assert err.value.backend == "gvisor"
    assert "runsc" in str(err.value) and "gvisor.dev" in str(err.value)
    assert "--host-uds=open" in str(err.value) and "--oci-seccomp" in str(err.value)


def test_rootless_engine_on_cgroup_v1_is_refused_and_doctor_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rootless Podman/Docker on cgroup v1 cannot enforce memory, pids or cpu
    # limits: the backend refuses it, and doctor names the way out.
    info, why = ctr.daemon_info()
    assert info is not None, why
    rootless = dict(info, CgroupVersion="1", SecurityOptions=[*(info.get("SecurityOptions") or []), "name=rootless"])
    monkeypatch.setattr(docker_api, "daemon_info", lambda: (rootless, ""))
    ok, reason = ContainerBackend.available()
    assert not ok and "rootless on cgroup v1" in reason and "cannot enforce memory, pids or cpu" in reason
    from glsandbox_kernel.cli import doctor_report

    row = doctor_report()["backends"]["container"]
    assert row["available"] is False and "rootless on cgroup v1" in row["reason"]
    assert "as root" in row["hint"] and "cgroup v2" in row["hint"]
    with pytest.raises(BackendUnavailableError, match="rootless on cgroup v1"):
        OSSandbox(OSSandboxConfig(isolation_type=CONTAINER))
    if str(info.get("CgroupVersion")) == "1":
        # The same daemon rootful is accepted: the refusal is the rootless mode.
        monkeypatch.setattr(docker_api, "daemon_info", lambda: (dict(info), ""))
        assert ContainerBackend.available()[0]


def test_gvisor_registered_without_the_arguments_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    # runsc's defaults: no host sockets (the worker could not connect), the
    # OCI seccomp profile ignored (our escape-class denials would be lost),
    # the sandbox network from the container's namespace.
    _daemon_with_runtimes(monkeypatch, {"runc": {"path": "runc"}, "runsc": {"path": "/usr/bin/runsc"}})
    ok, reason = GVisorBackend.available()
    assert not ok and "--host-uds=open --oci-seccomp --network=none" in reason
    good = {
        "path": "/usr/bin/runsc",
        "runtimeArgs": ["-host-uds=all", "--oci-seccomp", "--network=none", "-platform=kvm"],
    }
    _daemon_with_runtimes(monkeypatch, {"runsc": good})
    assert GVisorBackend.available()[0] == (_PROBLEM is None)
    assert ctr.missing_runtime_args("runsc", good) == []
    bad = dict(good, runtimeArgs=["--host-uds=none", "--oci-seccomp=false", "--network=sandbox"])
    assert ctr.missing_runtime_args("runsc", bad) == ["--host-uds=open", "--oci-seccomp", "--network=none"]
    assert ContainerBackend.available()[0] == (_PROBLEM is None)  # runc needs none of this


# -- the confinement, probed from inside -------------------------------------------------
def test_container_confinement_probe(monkeypatch: pytest.MonkeyPatch, isolation: IsolationType) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret")
    # PERMISSIVE: the probe's escape attempts are recorded, denied, and the call still returns.
    with OSSandbox(cfg(isolation, sandbox_mode=SandboxMode.PERMISSIVE)) as sb:
        facts = sb.execute(inside_probe)
        desc = worker_of(sb).describe()
        metrics = sb.metrics
    # network none: a private namespace with loopback only
    assert facts["interfaces"] == ["lo"]
    assert facts["loopback"] == "ok"
    assert facts["outside"] in ("ENETUNREACH", "EHOSTUNREACH")
    # read-only root, writable tmpfs working directory, not root
    # Podman's read-only mode puts a tmpfs (charged to the memory cgroup) on /var/tmp
    assert facts["root_write"] == "EROFS" or (facts["root_write"] == "ok" and facts["var_tmp_fstype"] == "tmpfs")
    assert facts["usr_write"] in ("EROFS", "EACCES")
    assert "ro" in facts["root_mount_opts"]
    assert facts["cwd"] == "/work"
    assert facts["uid"] == 65534 and facts["gid"] == 65534
    # no capabilities at all (gVisor's status has no CapAmb), no_new_privs, seccomp filter mode
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(facts["status"].get(cap, "0"), 16) == 0, cap
    assert "CapBnd" in facts["status"]
    assert facts["no_new_privs"] == 1
    assert facts["status"]["Seccomp"].strip() == "2"
    # escape battery: every one refused by the kernel with EPERM
    calls = facts["syscalls"]
    assert calls.pop("getpid") == "ok"
    assert calls.pop("clone3") == "ENOSYS"  # so libc falls back to clone, which is filtered
    assert calls == {name: "EPERM" for name in calls}, calls
    # seen from outside: under runc the host supervisor recorded them (trusted);
    # gVisor has no user notifications: denied inside, unseen, and it says so
    if isolation is CONTAINER and ctr_settings.supervised(None):
        assert desc["escape_detection"] == "supervisor (trusted)"
        assert metrics.escape_attempts >= len(calls) - 1  # clone and clone_newuser may dedupe
        assert metrics.violations_detected >= metrics.escape_attempts
    else:
        # gVisor: only what the sandbox reports of itself (exec, ctypes lookups): raw syscall() is unseen
        assert desc["escape_detection"].startswith("untrusted") and metrics.escape_attempts == 0
    # nothing of the host's secrets or Docker
    assert "AWS_SECRET_ACCESS_KEY" not in facts["env"]
    assert facts["docker_sock"] is False
    assert desc["read_only_root"] and desc["network"] == "none" and desc["cap_drop"] == ["ALL"]
    # the kernel the worker talks to: the host's under runc, gVisor's sentry under runsc
    host_release = os.uname().release
    if isolation is GVISOR:
        assert facts["uname_release"] != host_release and host_release not in facts["proc_version"]
        assert desc["runtime"] == "runsc" and desc["kernel"].startswith("gVisor")
        assert desc["process_limit"].startswith("RLIMIT_NPROC 64 in gVisor")
    else:
        assert facts["uname_release"] == host_release and host_release in facts["proc_version"]
        assert desc["runtime"] == "runc" and desc["kernel"] == "host"
        assert desc["process_limit"] == "pids cgroup 64"


def test_state_persists_and_builtin_exceptions_round_trip(isolation: IsolationType) -> None:
    with OSSandbox(cfg(isolation)) as sb:
        sb.run_cell("counter = 41")
        res = sb.run_cell("counter += 1\ncounter")
        assert res.status == "ok"
        assert res.outputs[-1]["data"]["text/plain"] == "42"

        def boom() -> None:
            raise ValueError("from the container")

        with pytest.raises(ValueError, match="from the container"):
            sb.execute(boom)
        assert sb.execute(sum, [1, 2, 3]) == 6


def test_metrics_come_from_the_container_cgroup(isolation: IsolationType) -> None:
    def allocate() -> int:
        block = bytearray(48 * 1024 * 1024)
        return len(block)

    with OSSandbox(cfg(isolation)) as sb:
        assert sb.execute(allocate) == 48 * MiB
        m = sb.metrics
    assert m.measured_by in ("cgroup-v1", "cgroup-v2")
    assert m.memory_peak_bytes is not None and m.memory_peak_bytes >= 48 * MiB
    assert m.cpu_time_used is not None


# -- limits and lifecycle ------------------------------------------------------------------
def test_memory_limit_kills_and_reports(isolation: IsolationType) -> None:
    def hog() -> int:
        data = [0] * 200_000_000
        return len(data)

    limit = 100 * MiB
    with OSSandbox(cfg(isolation, limits=ResourceLimits(memory_limit_bytes=limit))) as sb:
        sb.start()
        first = worker_of(sb)
        with pytest.raises(SandboxMemoryError) as err:
            sb.execute(hog)
        assert err.value.limit == limit
        # seen from outside: the kernel's OOM kill, and the cgroup's peak at death
        info = first.exit_info()
        assert info.reason == "oom" and info.returncode == -signal.SIGKILL
        peak = first.sample().memory_peak
        assert peak is not None and peak >= 0.9 * limit
        # the session recovers in a fresh container
        assert sb.execute(int, "7") == 7
        assert worker_of(sb).container_id != first.container_id


def spawn_tasks(threads: int, forks: int) -> dict[str, Any]:
    """Start up to ``threads`` threads, then up to ``forks`` child processes (sandbox side)."""
    import errno
    import os
    import threading

    stop = threading.Event()
    started: list[threading.Thread] = []
    facts: dict[str, Any] = {"thread_error": None, "fork_error": None}
    try:
        for _ in range(threads):
            t = threading.Thread(target=stop.wait)
            t.start()
            started.append(t)
    except RuntimeError as exc:
        facts["thread_error"] = str(exc)
    facts["threads"] = len(started)
    stop.set()
    for t in started:
        t.join()
    rfd, wfd = os.pipe()
    kids: list[int] = []
    try:
        for _ in range(forks):
            pid = os.fork()
            if pid == 0:
                os.close(wfd)
                os.read(rfd, 1)  # until the parent closes its end
                os._exit(0)
            kids.append(pid)
    except OSError as exc:
        facts["fork_error"] = errno.errorcode.get(exc.errno or 0, str(exc))
    facts["forks"] = len(kids)
    os.close(wfd)
    for pid in kids:
        os.waitpid(pid, 0)
    os.close(rfd)
    return facts


def test_process_limit_is_enforced_inside(isolation: IsolationType) -> None:
    # Under gVisor the host cgroup also holds the sentry and its stub tasks
    # (~60 idle): the limit must count the sandbox's tasks, not those, and
    # hitting it must fail the clone, not crash the sandbox.
    with OSSandbox(cfg(isolation)) as sb:  # default limit (64): room for 40 threads
        facts = sb.execute(spawn_tasks, 40, 10)
        assert facts["threads"] == 40 and facts["forks"] == 10, facts
    with OSSandbox(cfg(isolation, limits=ResourceLimits(max_processes=16))) as sb:
        facts = sb.execute(spawn_tasks, 40, 40)
        assert 8 <= facts["threads"] < 16 and facts["thread_error"], facts
        assert 8 <= facts["forks"] < 16 and facts["fork_error"] == "EAGAIN", facts
        assert sb.execute(abs, -4) == 4  # the same worker, still alive
        assert sb.session.worker is not None and sb.session.worker.poll() is None


class Sneaky:
    """A result type outside the codec's allowlist, whose __reduce__ would run code."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (os.system, ("touch /tmp/glsandbox-container-pwned",))


def test_disallowed_result_type_is_refused(isolation: IsolationType) -> None:
    from glsandbox_kernel import SandboxSecurityError

    with OSSandbox(cfg(isolation)) as sb:
        with pytest.raises(SandboxSecurityError, match="Sneaky"):
            sb.execute(Sneaky)
        assert sb.execute(abs, -5) == 5
    assert not os.path.exists("/tmp/glsandbox-container-pwned")


def test_stats_api_fallback(isolation: IsolationType) -> None:
    with OSSandbox(cfg(isolation)) as sb:
        sb.start()
        worker = worker_of(sb)
        worker._cgroup = None  # as on a host where the cgroup files are not visible
        sample = worker.sample()
        assert sample.source == "docker-stats"
        assert sample.memory_current and sample.memory_current > 0


def test_timeout_kills_the_container(isolation: IsolationType) -> None:
    def sleepy() -> None:
        import time

        time.sleep(30)

    with OSSandbox(cfg(isolation, execution_timeout=1.0)) as sb:
        sb.start()
        cid = worker_of(sb).container_id
        t0 = time.monotonic()
        with pytest.raises(SandboxTimeoutError):
            sb.execute(sleepy)
        assert time.monotonic() - t0 < 25  # stopped, not slept through (30 s)
        assert ctr.flush_removals(20)
        assert not container_exists(cid)
        assert sb.execute(abs, -3) == 3


def test_interrupt_reaches_the_worker(isolation: IsolationType) -> None:
    with OSSandbox(cfg(isolation)) as sb:
        sb.run_cell("x = 'kept'")

        def on_output(msg: dict[str, Any]) -> None:
            if "looping" in str(msg.get("text", "")):
                sb.interrupt()  # once the loop runs: one sent before the cell starts is dropped

        res = sb.run_cell("print('looping', flush=True)\nwhile True:\n    pass", on_output=on_output)
        assert res.status == "error" and res.error_name == "KeyboardInterrupt" and not res.state_lost
        assert sb.run_cell("x").outputs[-1]["data"]["text/plain"] == "'kept'"


def test_close_removes_the_container(isolation: IsolationType) -> None:
    sb = OSSandbox(cfg(isolation))
    sb.start()
    worker = worker_of(sb)
    pids = worker.host_pids()
    assert worker.pid in pids
    sb.close()  # the container's exit and removal finish in the background
    assert ctr.flush_removals(20)
    assert worker.poll() is not None
    assert not container_exists(worker.container_id)
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)


def test_image_missing_or_mismatched_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, isolation: IsolationType
) -> None:
    with pytest.raises(BackendUnavailableError, match="not present"):
        OSSandbox(cfg(isolation, container_image="glsandbox-no-such-image:0")).execute(abs, 1)
    # A python of another minor version is refused inside, before anything runs.
    image = ctr.default_image()
    monkeypatch.setattr(images, "host_python", lambda: "3.99")
    with pytest.raises(BackendUnavailableError) as err:
        OSSandbox(cfg(isolation, container_image=image)).execute(abs, 1)
    assert "3.99" in str(err.value) and "build-test-image" in str(err.value)


# -- the warm pool -------------------------------------------------------------------------
def test_warm_pool_hands_each_container_to_one_session(isolation: IsolationType) -> None:
    docker_pool.set_pool_size(2)
    backend = backend_class(isolation)(cfg(isolation))
    pool = docker_pool.get_pool(backend.pool_key(), backend._launch_pooled)
    assert pool.wait_ready(2, timeout=60)
    seen: list[str] = []
    for _ in range(3):
        with OSSandbox(cfg(isolation)) as sb:
            assert sb.execute(abs, -1) == 1
            worker = worker_of(sb)
            seen.append(worker.container_id)
            assert worker.pooled and worker.describe()["pooled"]
            assert worker.session_id == sb.session_id
        assert pool.wait_ready(2, timeout=60)
    assert len(set(seen)) == 3  # never reused across sessions
    assert ctr.flush_removals(20)
    for cid in seen:
        assert not container_exists(cid)
    # the warm ones, drained by the fixture: at least the floor, at most the adaptive bound
    assert 2 <= len(our_containers()) <= docker_pool.MAX_ADAPTIVE


# -- no leaks across host exits -------------------------------------------------------------
_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from glsandbox_kernel import OSSandbox, OSSandboxConfig, IsolationType
    from glsandbox_kernel.backends.container import warm as docker_pool
    docker_pool.set_pool_size(int(sys.argv[2]))
    sb = OSSandbox(OSSandboxConfig(isolation_type=IsolationType(sys.argv[3])))
    sb.execute(abs, 1)
    print("ready", flush=True)
    mode = sys.argv[1]
    if mode == "exit":
        sys.exit(0)
    time.sleep(60)
    """
)


def _child_containers(pid: int) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=glsandbox=1", "--filter", f"label={LABEL_HOST_PID}={pid}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


@pytest.mark.parametrize("mode", ["exit", "sigterm"])
def test_host_exit_removes_containers(mode: str, isolation: IsolationType) -> None:
    env = dict(os.environ, PYTHONPATH=ctr.package_dir().rsplit("/", 1)[0])
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode, "1", isolation.value],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
    if mode == "sigterm":
        deadline = time.monotonic() + 30
        while len(_child_containers(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # the session's container plus one warm one
        proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    assert proc.returncode == (0 if mode == "exit" else -signal.SIGTERM)
    assert _child_containers(proc.pid) == []


def test_stale_containers_of_dead_hosts_are_swept(isolation: IsolationType) -> None:
    env = dict(os.environ, PYTHONPATH=ctr.package_dir().rsplit("/", 1)[0])
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "stay", "0", isolation.value],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    # Its host-death watcher (backends/container/watcher.py) would remove the container
    # at once: a host killed with its whole process tree leaves it to the sweep.
    for pid in os.listdir("/proc"):
        if pid.isdigit() and procfs.parent_pid(int(pid)) == proc.pid:
            os.kill(int(pid), signal.SIGKILL)
    proc.kill()  # SIGKILL: no atexit, no handler
    proc.wait(10)
    assert len(_child_containers(proc.pid)) == 1
    with OSSandbox(cfg(isolation)) as sb:  # our own live container must survive the sweep
        sb.start()
        mine = worker_of(sb).container_id
        removed = ctr.sweep_stale()
        assert _child_containers(proc.pid) == []
        assert mine not in removed and container_exists(mine)
        assert sb.execute(abs, -2) == 2


def test_worker_process_contract(isolation: IsolationType) -> None:
    backend = backend_class(isolation)(cfg(isolation))
    worker = backend.start(session_id="contract")
    try:
        assert isinstance(worker, WorkerProcess)
        assert worker.poll() is None and worker.wait(0.05) is None
        assert isinstance(worker, ContainerWorker) and worker.init_pid
        with open(f"/proc/{worker.init_pid}/cmdline", "rb") as fh:
            init_cmd = fh.read().split(b"\0")[0]
        if isolation is GVISOR:
            # On the host there is no worker process at all: the container's
            # pid is gVisor's sentry, which runs the worker in its own kernel.
            assert init_cmd == b"runsc-sandbox" and worker.pid == worker.init_pid
            assert worker.init_pid in worker.host_pids()
        else:
            # Docker's init is docker-init (tini), Podman's /run/podman-init (catatonit)
            assert init_cmd.endswith((b"docker-init", b"podman-init")) and worker.pid != worker.init_pid
        sample = worker.sample()
        assert sample.memory_current and sample.pids and sample.pids >= 2
        worker.reset_peak()
        worker.send_signal(signal.SIGTERM)  # the worker has no handler: it ends
        assert worker.wait(10) is not None
        assert worker.exit_info().returncode == -signal.SIGTERM
    finally:
        worker.kill()
        worker.cleanup()
        worker.cleanup()  # idempotent


def test_docker_cli_present() -> None:
    assert shutil.which("docker"), "the docker CLI is used by these tests' leak checks"


class _FakeWorker:
    """Stands in for a ContainerWorker in pool bookkeeping tests (no Docker)."""

    def __init__(self) -> None:
        self.pooled = False
        self.killed = self.cleaned = False

    def poll(self) -> int | None:
        return -9 if self.killed else None

    def kill(self) -> None:
        self.killed = True

    def cleanup(self) -> None:
        self.cleaned = True


def test_pool_size_follows_the_rate_of_takes_bounded() -> None:
    """Back-to-back takes raise the size a pool refills to; never above the bound; 0 stays off."""
    docker_pool.set_pool_size(2)
    assert docker_pool.adaptive_size() >= 2
    for _ in range(30):  # 30 sessions in a burst, each wanting a fresh container
        docker_pool.note_take()
    burst = docker_pool.adaptive_size()
    assert 2 < burst <= docker_pool.MAX_ADAPTIVE
    docker_pool.set_pool_size(0)
    assert docker_pool.adaptive_size() == 0  # pooling off means off, whatever the rate


def test_a_burst_is_not_slowed_by_its_own_refill(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above low water a take's refill waits for a pause in the takes; at low water it starts at once."""
    monkeypatch.setattr(docker_pool, "QUIET", 3600.0)  # no pause comes during this test
    docker_pool.set_pool_size(4)
    made: list[_FakeWorker] = []

    def launcher() -> Any:
        made.append(_FakeWorker())
        return made[-1]

    pool = docker_pool.get_pool("key-burst", launcher)
    assert pool.wait_ready(4, timeout=5) and pool.settle(5) and len(made) == 4  # the first fill has ended
    for _ in range(4 - docker_pool.LOW_WATER - 1):  # as ContainerBackend.start does
        docker_pool.note_take()
        assert pool.take() is not None
        docker_pool.refill_after_take(pool)
    assert pool.settle(5) and len(made) == 4 and len(pool) == docker_pool.LOW_WATER + 1  # deferred
    docker_pool.note_take()
    assert pool.take() is not None
    docker_pool.refill_after_take(pool)  # low water: now (its fillers are running when it returns)
    assert pool.settle(5) and len(made) > 4 and len(pool) >= 4  # to the size the burst taught it
    docker_pool.drain_all()


def test_pool_bookkeeping_take_once_and_evict_least_recent() -> None:
    docker_pool.set_pool_size(1)
    made: list[_FakeWorker] = []

    def launcher() -> Any:
        made.append(_FakeWorker())
        return made[-1]

    pools = [docker_pool.get_pool(f"key-{i}", launcher) for i in range(docker_pool.MAX_POOLS)]
    for pool in pools:
        assert pool.wait_ready(1, timeout=5)
    first = docker_pool.get_pool("key-0", launcher).take()  # as ContainerBackend.start does
    assert first is not None and pools[0].take() is None  # one session each
    assert pools[0].wait_ready(1, timeout=5)  # refilled in the background
    docker_pool.get_pool("key-new", launcher)  # one key too many: the least recently used goes
    assert pools[1] not in docker_pool.pools() and pools[0] in docker_pool.pools()
    deadline = time.monotonic() + 5
    while not all(w.killed for w in made[1:2]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert made[1].killed and made[1].cleaned
    docker_pool.drain_all()
    assert all(w.killed for w in made if w is not first)
