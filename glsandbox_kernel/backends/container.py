"""CONTAINER backend: the worker in a locked-down Docker container (host side).

Everything in this module runs on the trusted host side. It talks to the
Docker daemon through the ``docker`` SDK, imported lazily (never at import
time of the core), and starts one container per worker:

- network none (a fresh network namespace holding only loopback), read-only
  root, tmpfs ``/tmp`` and working directory sized by ``disk_quota_bytes``,
  ``cap_drop=ALL``, ``no-new-privileges``, our seccomp profile (escape-class
  syscalls fail with EPERM), user 65534, memory/cpu/pids limits, rlimits,
  labels naming the session and the host process, a scrubbed environment;
- the worker's code (this package) and the host interpreter's
  site-packages are bind-mounted read-only, so the image needs only a
  ``python3`` of the host's minor version (``glsandbox-python:X.Y``, built
  without any registry by ``scripts/build-test-image``);
- transport: a Unix socket listening in a private host directory that is
  bind-mounted at ``/run/glsandbox``; the worker connects to it and the host
  checks (SO_PEERCRED and the peer's cgroup) that the caller is the container.

:func:`container_settings` builds the container's settings and is shared
with the GVISOR backend (:mod:`.gvisor`), which adds ``runtime="runsc"``
and the few settings a user-space kernel needs (see :data:`RUNSC`).
The warm pool lives in :mod:`.docker_pool`.

No leaks: containers are removed after their worker ended (in a background
reaper, so removal is off the caller's path), on interpreter exit (atexit and
SIGTERM) and, for host processes that died hard, by :func:`sweep_stale` at
the next start-up (by label ``glsandbox=1`` and the recorded host pid).
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib
import json
import logging
import os
import platform
import queue
import select
import shutil
import signal
import socket
import struct
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, ClassVar

from ..config import IsolationType, OSSandboxConfig
from ..exceptions import (
    BackendUnavailableError,
    SandboxConfigError,
    SandboxCrashedError,
    SandboxSecurityError,
)
from .base import ExitInfo, ResourceSample, SandboxBackend, WorkerProcess

log = logging.getLogger("glsandbox.container")

# -- names shared by the host and the container --------------------------------
LABEL = "glsandbox"
LABEL_SESSION = "glsandbox.session"
LABEL_HOST_PID = "glsandbox.host_pid"
LABEL_HOST_START = "glsandbox.host_start"
LABEL_HOST_PIDNS = "glsandbox.host_pidns"
LABEL_BACKEND = "glsandbox.backend"
IMAGE_PYTHON_LABEL = "glsandbox.python"

SOCKET_DIR = "/run/glsandbox"
SOCKET_PATH = f"{SOCKET_DIR}/sock"
SITE_DIR = "/opt/glsandbox/site"
DEPS_DIR = "/opt/glsandbox/deps"
WORK_DIR = "/work"
SANDBOX_USER = "65534:65534"
VERSION_MISMATCH_EXIT = 86
CONNECT_TIMEOUT = 30.0
BUILD_SCRIPT = "scripts/build-test-image"

#: gVisor's OCI runtime. Under it the worker meets gVisor's kernel (the
#: sentry), which differs from runc in ways the settings builder accounts for:
#: - the sentry applies the OCI seccomp profile itself (``--oci-seccomp``),
#:   always with EPERM (runsc 2022 ignores ``errnoRet``), so the clone3 ->
#:   ENOSYS rule is left out: the sentry has no clone3 (ENOSYS natively) and
#:   an EPERM there would stop libc from falling back to clone;
#: - the host cgroup holds the sentry's and the gofer's threads (~60 idle)
#:   and, on the ptrace platform, a stub process per guest address space
#:   with a stub thread per sentry thread that ran in it (measured: ~11 host
#:   tasks per guest process, <= 1 per extra guest thread). Hitting the host
#:   pids limit kills the sentry (Go: "failed to create new OS thread", exit
#:   2) instead of failing the guest's clone. So ``max_processes`` is enforced
#:   inside, exactly, by RLIMIT_NPROC (the sentry counts only its own tasks;
#:   under runc it would count every host process of uid 65534), and the host
#:   pids limit is a backstop of RUNSC_HOST_TASKS_BASE + PER_TASK * N.
RUNSC = "runsc"
RUNSC_HOST_TASKS_BASE = 128
RUNSC_HOST_TASKS_PER_TASK = 16
#: runtimeArgs the runsc registration must have: the worker reaches its host
#: socket through the gofer (--host-uds); the sentry must enforce our seccomp
#: profile (--oci-seccomp; without it the profile would be ignored); and the
#: sandbox gets gVisor's loopback-only stack (--network=none: our containers
#: never have a network, and runsc 20221219 fails to start Docker's
#: network-none containers without it, leaving the half-made sandbox behind).
RUNSC_REQUIRED_ARGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("--host-uds", ("open", "all")),
    ("--oci-seccomp", ("", "true")),
    ("--network", ("none",)),
)

#: Syscalls our seccomp profile makes fail with EPERM (escape class). Docker's
#: own default profile is replaced by ours, whose default action is to allow;
#: with cap_drop=ALL and no-new-privileges the privileged calls Docker's
#: allowlist also guards fail anyway, and these are denied outright.
ESCAPE_SYSCALLS: tuple[str, ...] = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "mount_setattr",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "fanotify_init",
    "lookup_dcookie",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "uselib",
    "nfsservctl",
    "_sysctl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "stime",
)
# clone(2) flags that create namespaces (CLONE_NEWNS ... CLONE_NEWNET).
_CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_EPERM, _ENOSYS = 1, 38
_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "amd64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "arm64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}

# The container's entry point (runs INSIDE the sandbox, as its pid 2 under
# docker-init): refuse a python of another minor version with a clear
# message and exit code 86, put the mounted worker code on sys.path, then
# run ``python -m glsandbox_kernel.worker --connect SOCKET``.
_CHILD_BOOTSTRAP = """\
import sys
want = sys.argv[1]
have = '%d.%d' % sys.version_info[:2]
if have != want:
    sys.stderr.write('glsandbox: the image has python %s, the host needs %s\\n' % (have, want))
    sys.exit(86)
import os, site
for path in sys.argv[2].split(':'):
    if not path:
        continue
    sys.path.append(path)
    # .pth files, but not the host's editable-install finders (host paths).
    for name in sorted(os.listdir(path)):
        if name.endswith('.pth') and not name.startswith(('__editable__', 'distutils-precedence')):
            site.addpackage(path, name, set())
sys.path.insert(0, sys.argv[3])
# The package's __init__ imports the whole host-side API; the worker needs
# none of it. Register the package without running __init__ and run it on
# the first attribute access (user code that imports glsandbox_kernel).
import importlib.util
pkg_dir = os.path.join(sys.argv[3], 'glsandbox_kernel')
spec = importlib.util.spec_from_file_location(
    'glsandbox_kernel', os.path.join(pkg_dir, '__init__.py'), submodule_search_locations=[pkg_dir])
pkg = importlib.util.module_from_spec(spec)
def _load_init(name, pkg=pkg, spec=spec):
    del pkg.__getattr__
    spec.loader.exec_module(pkg)
    return getattr(pkg, name)
pkg.__getattr__ = _load_init
sys.modules['glsandbox_kernel'] = pkg
try:
    import cloudpickle  # before connecting, so a pooled worker's first call is fast
except ImportError:
    pass
sys.argv = ['glsandbox_kernel.worker', '--connect', sys.argv[4]]
import runpy
runpy.run_module('glsandbox_kernel.worker', run_name='__main__', alter_sys=True)
"""

_CONTAINER_KEYS = frozenset(
    {
        "image",
        "command",
        "user",
        "environment",
        "working_dir",
        "labels",
        "hostname",
        "network_disabled",
        "entrypoint",
        "stop_signal",
        "name",
        "stdin_open",
        "tty",
    }
)


# -- images ---------------------------------------------------------------------
def host_python() -> str:
    """The host interpreter's ``major.minor`` (the container's must match)."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def default_image() -> str:
    """``glsandbox-python:X.Y`` for the host's Python ``X.Y``."""
    return f"glsandbox-python:{host_python()}"


def image_hint(image: str) -> str:
    """What to do about a missing or mismatched image."""
    if image == default_image():
        return (
            f"build it locally without any registry with `{BUILD_SCRIPT}` "
            "(debootstrap + docker import), after scripts/dockerd-up"
        )
    return (
        f"use an image whose python3 is {host_python()}, or unset container_image to use "
        f"{default_image()} (built by `{BUILD_SCRIPT}`)"
    )


# -- the settings builder (shared with GVISOR) ----------------------------------
def seccomp_profile(runtime: str | None = None) -> dict[str, Any]:
    """Our seccomp profile: allow by default, EPERM for escape-class syscalls.

    Also denies clone(2) with namespace flags and the TIOCSTI/TIOCLINUX
    ioctls, and answers clone3 with ENOSYS so that libc falls back to clone,
    whose flags the filter can inspect (as Docker's default profile does).
    Under gVisor (``runtime="runsc"``) the clone3 rule is left out: the
    sentry answers clone3 with ENOSYS itself and would turn the rule's
    ENOSYS into EPERM (see :data:`RUNSC`).
    """
    syscalls: list[dict[str, Any]] = [
        {"names": list(ESCAPE_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM},
    ]
    if runtime != RUNSC:
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    for flag in _CLONE_NS_FLAGS:
        syscalls.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": _EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        )
    for request in (_TIOCSTI, _TIOCLINUX):
        syscalls.append(
            {
                "names": ["ioctl"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": _EPERM,
                "args": [{"index": 1, "value": request, "op": "SCMP_CMP_EQ"}],
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": _ARCHES.get(platform.machine().lower(), []),
        "syscalls": syscalls,
    }


def _package_dir() -> str:
    return str(Path(__file__).resolve().parent.parent)


def dependency_dirs() -> list[str]:
    """Host directories holding the worker's pure-Python dependencies.

    The running interpreter's site-packages (purelib/platlib) plus wherever
    cloudpickle lives; bound read-only under ``/opt/glsandbox/deps/N``.
    """
    dirs: list[str] = []
    paths = sysconfig.get_paths()
    candidates = [paths.get("purelib"), paths.get("platlib")]
    try:
        import cloudpickle

        candidates.append(str(Path(cloudpickle.__file__).resolve().parent.parent))
    except ImportError:
        pass
    for cand in candidates:
        if cand and os.path.isdir(cand):
            real = os.path.realpath(cand)
            if real not in dirs:
                dirs.append(real)
    return dirs


def worker_binds() -> dict[str, dict[str, str]]:
    """Read-only binds of the worker code: ``{host_dir: {"bind": path, "mode": "ro"}}``."""
    binds = {_package_dir(): {"bind": f"{SITE_DIR}/glsandbox_kernel", "mode": "ro"}}
    for i, d in enumerate(dependency_dirs()):
        binds.setdefault(d, {"bind": f"{DEPS_DIR}/{i}", "mode": "ro"})
    return binds


def worker_command(binds: dict[str, dict[str, str]]) -> list[str]:
    """The container's command: the child-side bootstrap, then the worker."""
    deps = ":".join(b["bind"] for b in binds.values() if b["bind"].startswith(DEPS_DIR))
    return ["python3", "-s", "-c", _CHILD_BOOTSTRAP, host_python(), deps, SITE_DIR, SOCKET_PATH]


def _under(path: str, root: str) -> bool:
    path, root = path.rstrip("/") or "/", root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def _user_binds(config: OSSandboxConfig) -> dict[str, dict[str, str]]:
    """Binds the config asks for (project dir, readonly/writable paths).

    A bind that is, contains or lies under a blocked path (the Docker socket,
    /root, /home ...) is refused: nothing of those may reach the container.
    """
    fs = config.filesystem
    wanted: list[tuple[str, str, str, str]] = []
    if fs.project_dir and config.project_access != "none":  # the level decides (hidden at STRICT)
        from ..project import find_masked

        secrets = find_masked(os.path.realpath(fs.project_dir), fs.masked_names)
        if secrets:
            # These binds cannot hide single names inside a folder: then the folder is not shown.
            log.warning(
                "container: not showing %s: it holds %s, which this backend cannot hide (use isolation namespace)",
                fs.project_dir,
                ", ".join(p for p, _ in secrets[:5]),
            )
        else:
            mode = "rw" if config.project_access == "write" else "ro"
            wanted.append(("project_dir", fs.project_dir, f"{WORK_DIR}/project", mode))
    wanted += [("readonly_paths", p, p, "ro") for p in fs.readonly_paths]
    wanted += [("writable_paths", p, p, "rw") for p in fs.writable_paths]
    binds: dict[str, dict[str, str]] = {}
    for field, host, target, mode in wanted:
        for blocked in fs.blocked_paths:
            if _under(host, blocked) or _under(blocked, host):
                raise SandboxConfigError(f"filesystem.{field}", f"{host!r} overlaps the blocked path {blocked!r}")
        binds[os.path.realpath(host)] = {"bind": target, "mode": mode}
    return binds


def _environment(config: OSSandboxConfig, binds: dict[str, dict[str, str]]) -> dict[str, str]:
    from .basic import scrubbed_env

    env = scrubbed_env(config, WORK_DIR)
    deps = [b["bind"] for b in binds.values() if b["bind"].startswith(DEPS_DIR)]
    env.update(
        {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": WORK_DIR,
            "TMPDIR": "/tmp",
            "PYTHONPATH": ":".join([SITE_DIR, *deps]),
            "LANG": env.get("LANG", "C.UTF-8"),
        }
    )
    env.update(dict(config.whitelist.env))
    return env


def _proc_start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _pidns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def host_labels(session_id: str, backend: str) -> dict[str, str]:
    """Labels naming the session and the host process (for stale sweeps)."""
    return {
        LABEL: "1",
        LABEL_SESSION: session_id,
        LABEL_HOST_PID: str(os.getpid()),
        LABEL_HOST_START: _proc_start_ticks(os.getpid()) or "",
        LABEL_HOST_PIDNS: _pidns(),
        LABEL_BACKEND: backend,
    }


def container_settings(
    config: OSSandboxConfig,
    *,
    session_id: str,
    socket_dir: str,
    runtime: str | None = None,
    image: str | None = None,
    backend: str = "container",
) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create/run`` for one worker.

    Shared by CONTAINER and GVISOR (``runtime="runsc"``, which differs only
    in the seccomp profile's clone3 rule and in how the process limit is
    enforced: see :data:`RUNSC`). ``socket_dir`` is the private host
    directory holding the transport socket. Pure: builds a dict, starts
    nothing (tests assert it directly).
    """
    lim = config.limits
    binds = worker_binds()
    binds.update(_user_binds(config))
    binds[socket_dir] = {"bind": SOCKET_DIR, "mode": "ro"}
    # Docker's tmpfs defaults to noexec; "exec" only where new programs are allowed.
    tmpfs_opts = "rw,nosuid,nodev," + ("exec" if config.new_programs_allowed else "noexec")
    size = lim.disk_quota_bytes or lim.memory_limit_bytes
    if size:
        tmpfs_opts += f",size={int(size)}"
    uid, _, gid = SANDBOX_USER.partition(":")
    ulimits = [{"name": "core", "soft": 0, "hard": 0}]
    if lim.max_open_files is not None:
        ulimits.append({"name": "nofile", "soft": int(lim.max_open_files), "hard": int(lim.max_open_files)})
    if lim.max_file_size_bytes is not None:
        ulimits.append({"name": "fsize", "soft": int(lim.max_file_size_bytes), "hard": int(lim.max_file_size_bytes)})
    if lim.cpu_time_limit_seconds is not None:
        secs = max(1, int(lim.cpu_time_limit_seconds + 0.999))
        ulimits.append({"name": "cpu", "soft": secs, "hard": secs})
    settings: dict[str, Any] = {
        "image": image or config.container_image or default_image(),
        "command": worker_command(binds),
        "user": SANDBOX_USER,
        "environment": _environment(config, binds),
        "working_dir": WORK_DIR,
        "hostname": "sandbox",
        "labels": host_labels(session_id, backend),
        "detach": True,
        # network none, and no libnetwork sandbox at all: the runtime makes a
        # fresh network namespace with only loopback (also ~150 ms faster).
        "network_mode": "none",
        "network_disabled": True,
        "read_only": True,
        "tmpfs": {"/tmp": tmpfs_opts + ",mode=1777", WORK_DIR: tmpfs_opts + f",uid={uid},gid={gid},mode=0700"},
        "volumes": binds,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true", "seccomp=" + json.dumps(seccomp_profile(runtime))],
        "ipc_mode": "private",
        "init": True,
        "ulimits": ulimits,
        "log_config": {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
    }
    if lim.memory_limit_bytes is not None:
        settings["mem_limit"] = int(lim.memory_limit_bytes)
        settings["memswap_limit"] = int(lim.memory_limit_bytes)
    if lim.cpu_percent_limit is not None:
        settings["nano_cpus"] = int(lim.cpu_percent_limit / 100 * 1_000_000_000)
    if lim.max_processes is not None:
        if runtime == RUNSC:
            # Exact inside (the sentry's RLIMIT_NPROC), a backstop outside.
            nproc = int(lim.max_processes)
            ulimits.append({"name": "nproc", "soft": nproc, "hard": nproc})
            settings["pids_limit"] = RUNSC_HOST_TASKS_BASE + RUNSC_HOST_TASKS_PER_TASK * nproc
        else:
            settings["pids_limit"] = int(lim.max_processes)
    if runtime:
        settings["runtime"] = runtime
    return settings


def settings_key(settings: dict[str, Any]) -> str:
    """A digest of everything that matters for reuse (pool key): all but per-use fields."""
    stable = dict(settings)
    stable["labels"] = {k: v for k, v in settings.get("labels", {}).items() if k != LABEL_SESSION}
    stable["volumes"] = {k: v for k, v in settings.get("volumes", {}).items() if v.get("bind") != SOCKET_DIR}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def create_kwargs(api: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """Turn :func:`container_settings` into ``APIClient.create_container`` kwargs.

    The high-level ``containers.create`` costs an extra inspect round trip;
    this splits the same dict into container and host-config parts.
    """
    container: dict[str, Any] = {}
    host: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "detach":
            continue
        if key in _CONTAINER_KEYS:
            container[key] = value
        elif key == "volumes":
            host["binds"] = value
        else:
            host[key] = value
    container["host_config"] = api.create_host_config(**host)
    return container


# -- Docker access (lazy) -------------------------------------------------------
_client_lock = threading.Lock()
_client: Any = None
_info_cache: tuple[float, dict[str, Any] | None, str] = (0.0, None, "")
_INFO_TTL = 5.0
_image_python_cache: dict[str, str] = {}


def docker_module() -> ModuleType:
    """The ``docker`` SDK, imported on first use; BackendUnavailableError without it."""
    try:
        return importlib.import_module("docker")
    except ImportError as exc:
        raise BackendUnavailableError(
            "container",
            f"the docker Python SDK is not installed ({exc})",
            "pip install 'glsandbox-kernel[docker]' (or pip install docker)",
        ) from exc


def docker_client() -> Any:
    """One shared ``docker.DockerClient`` (from the environment: DOCKER_HOST ...)."""
    global _client
    with _client_lock:
        if _client is None:
            docker = docker_module()
            try:
                _client = docker.from_env(timeout=60)
            except docker.errors.DockerException as exc:
                raise BackendUnavailableError(
                    "container", f"the Docker daemon is not reachable ({exc})", "run scripts/dockerd-up"
                ) from exc
        return _client


def reset_client() -> None:
    """Forget the shared client and cached daemon facts (tests, after a daemon restart)."""
    global _client, _info_cache
    with _client_lock:
        _client = None
        _info_cache = (0.0, None, "")
        _image_python_cache.clear()


def daemon_info() -> tuple[dict[str, Any] | None, str]:
    """``docker info`` (cached for a few seconds) or (None, why not)."""
    global _info_cache
    stamp, info, why = _info_cache
    if time.monotonic() - stamp < _INFO_TTL:
        return info, why
    try:
        info, why = docker_client().info(), ""
    except BackendUnavailableError as exc:
        info, why = None, exc.reason
    except Exception as exc:  # noqa: BLE001 - any SDK/transport error means "unreachable"
        info, why = None, f"the Docker daemon is not reachable ({exc})"
    _info_cache = (time.monotonic(), info, why)
    return info, why


def image_python(image: str) -> str | None:
    """The image's python3 ``X.Y`` (label ``glsandbox.python`` or one probe run, cached)."""
    docker = docker_module()
    client = docker_client()
    try:
        attrs = client.api.inspect_image(image)
    except docker.errors.ImageNotFound:
        return None
    image_id = attrs["Id"]
    if image_id in _image_python_cache:
        return _image_python_cache[image_id]
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    version = labels.get(IMAGE_PYTHON_LABEL)
    if not version:
        out = client.containers.run(
            image,
            ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            network_mode="none",
            network_disabled=True,
            remove=True,
            user=SANDBOX_USER,
        )
        version = out.decode().strip()
    _image_python_cache[image_id] = version
    return str(version)


def _runtime_args(entry: Any) -> list[str]:
    """``runtimeArgs`` of one ``docker info`` Runtimes entry."""
    args = entry.get("runtimeArgs") if isinstance(entry, dict) else None
    return [str(a) for a in args or []]


def missing_runtime_args(runtime: str, entry: Any) -> list[str]:
    """The runtime arguments we need that a registration lacks (runsc only)."""
    if runtime != RUNSC:
        return []
    given: dict[str, str] = {}
    for arg in _runtime_args(entry):
        name, eq, value = arg.partition("=")
        given["--" + name.lstrip("-")] = value if eq else ""  # Go flags: -x and --x alike
    missing = []
    for name, allowed in RUNSC_REQUIRED_ARGS:
        if name not in given or given[name] not in allowed:
            missing.append(f"{name}={allowed[0]}" if allowed[0] else name)
    return missing


def check_available(*, backend: str, runtime: str | None = None, image: str | None = None) -> tuple[bool, str]:
    """SDK importable, daemon answering, runtime registered, image present and matching."""
    try:
        docker_module()
    except BackendUnavailableError as exc:
        return False, exc.reason
    info, why = daemon_info()
    if info is None:
        return False, why
    if runtime:
        registered = info.get("Runtimes") or {}
        if runtime not in registered:
            return False, (
                f"the {runtime!r} runtime is not registered with the Docker daemon "
                f"(registered: {', '.join(sorted(registered)) or 'none'})"
            )
        missing = missing_runtime_args(runtime, registered[runtime])
        if missing:
            return False, (
                f"the {runtime!r} runtime is registered without {' '.join(missing)} "
                f"(runtimeArgs: {' '.join(_runtime_args(registered[runtime])) or 'none'})"
            )
    image = image or default_image()
    try:
        version = image_python(image)
    except Exception as exc:  # noqa: BLE001 - the probe failing is a reason, not a crash
        return False, f"cannot inspect image {image}: {exc}"
    if version is None:
        return False, f"image {image} is not present"
    if version != host_python():
        return False, f"image {image} has python {version}, the host runs {host_python()}"
    used = ""
    if runtime:
        args = _runtime_args((info.get("Runtimes") or {}).get(runtime))
        used = f", runtime {runtime}" + (f" ({' '.join(args)})" if args else "")
    return True, f"Docker {info.get('ServerVersion', '?')}, image {image} (python {version}){used}"


# -- cgroups: one interface, v1 and v2 readers, chosen by detection --------------
_V1_CONTROLLERS = ("memory", "cpuacct", "pids", "blkio")
_mounts_cache: tuple[dict[str, tuple[str, str]], tuple[str, str] | None] | None = None


def _cgroup_mounts() -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None]:
    """``({controller: (root, mountpoint)}, (root, mountpoint) of cgroup2 or None)``."""
    global _mounts_cache
    if _mounts_cache is not None:
        return _mounts_cache
    v1: dict[str, tuple[str, str]] = {}
    v2: tuple[str, str] | None = None
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                lf, rf = left.split(), right.split()
                if len(lf) < 5 or len(rf) < 1:
                    continue
                if rf[0] == "cgroup2":
                    v2 = (lf[3], lf[4])
                elif rf[0] == "cgroup" and len(rf) > 2:
                    for opt in rf[2].split(","):
                        if opt in _V1_CONTROLLERS:
                            v1.setdefault(opt, (lf[3], lf[4]))
    except OSError:
        pass
    _mounts_cache = (v1, v2)
    return _mounts_cache


def _join(mount: tuple[str, str], cgpath: str) -> str:
    root, point = mount
    if root != "/" and (cgpath == root or cgpath.startswith(root + "/")):
        cgpath = cgpath[len(root) :]
    return point + cgpath


def _parse_int(data: bytes | None) -> int | None:
    try:
        return None if data is None else int(data.split()[0])
    except (ValueError, IndexError):
        return None


def _parse_keyed(data: bytes | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (data or b"").splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0].decode()] = int(parts[1])
    return out


class _Files:
    """cgroup files opened once and re-read with pread (about 10x cheaper than open+read).

    Opened read-write where possible: cgroup v2's memory.peak must be reset
    and read through the same open file.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int | None] = {}

    def _fd(self, path: str) -> int | None:
        if path not in self._fds:
            fd: int | None = None
            for flags in (os.O_RDWR, os.O_RDONLY):
                try:
                    fd = os.open(path, flags | os.O_CLOEXEC)
                    break
                except OSError:
                    continue
            self._fds[path] = fd
        return self._fds[path]

    def read(self, path: str) -> bytes | None:
        fd = self._fd(path)
        if fd is None:
            return None
        try:
            return os.pread(fd, 65536, 0)
        except OSError:
            return None

    def write(self, path: str, data: bytes) -> None:
        fd = self._fd(path)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(fd, data, 0)

    def close(self) -> None:
        for fd in self._fds.values():
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fds.clear()


class CgroupReader(abc.ABC):
    """Reads one container's cgroup from the host (outside the worker).

    Files are opened on first use and kept open (see :class:`_Files`);
    :meth:`close` releases them.
    """

    version: ClassVar[str]

    def __init__(self) -> None:
        self.files = _Files()

    @abc.abstractmethod
    def sample(self) -> ResourceSample | None:
        """A reading, or None once the cgroup is gone."""

    @abc.abstractmethod
    def reset_peak(self) -> None:
        """Start a new peak-memory window."""

    @abc.abstractmethod
    def procs(self) -> list[int]:
        """Host pids in the cgroup."""

    def close(self) -> None:
        self.files.close()


def _io_bytes_v1(data: bytes | None) -> tuple[int | None, int | None]:
    if data is None:
        return None, None
    read = write = 0
    for line in data.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == b"Read":
            read += int(parts[2])
        elif len(parts) == 3 and parts[1] == b"Write":
            write += int(parts[2])
    return read, write


def _io_bytes_v2(data: bytes | None) -> tuple[int | None, int | None]:
    if data is None:
        return None, None
    read = write = 0
    for line in data.splitlines():
        for item in line.split()[1:]:
            key, _, val = item.partition(b"=")
            if key == b"rbytes":
                read += int(val)
            elif key == b"wbytes":
                write += int(val)
    return read, write


class CgroupV1Reader(CgroupReader):
    """cgroup v1: memory, cpuacct, pids and blkio hierarchies."""

    version = "v1"

    def __init__(self, dirs: dict[str, str]) -> None:
        super().__init__()
        self.dirs = dirs

    def _f(self, controller: str, name: str) -> str:
        return os.path.join(self.dirs.get(controller, "/nonexistent"), name)

    def sample(self) -> ResourceSample | None:
        current = _parse_int(self.files.read(self._f("memory", "memory.usage_in_bytes")))
        if current is None and not os.path.isdir(self.dirs.get("memory", "/nonexistent")):
            return None
        cpu_ns = _parse_int(self.files.read(self._f("cpuacct", "cpuacct.usage")))
        oom = _parse_keyed(self.files.read(self._f("memory", "memory.oom_control"))).get("oom_kill")
        read, write = _io_bytes_v1(self.files.read(self._f("blkio", "blkio.throttle.io_service_bytes")))
        return ResourceSample(
            cpu_time=None if cpu_ns is None else cpu_ns / 1e9,
            memory_current=current,
            memory_peak=_parse_int(self.files.read(self._f("memory", "memory.max_usage_in_bytes"))),
            pids=_parse_int(self.files.read(self._f("pids", "pids.current"))),
            disk_read_bytes=read,
            disk_write_bytes=write,
            oom_killed=None if oom is None else oom > 0,
            source="cgroup-v1",
        )

    def reset_peak(self) -> None:
        self.files.write(self._f("memory", "memory.max_usage_in_bytes"), b"0")

    def procs(self) -> list[int]:
        data = self.files.read(self._f("memory", "cgroup.procs"))
        return [int(x) for x in (data or b"").split()]


class CgroupV2Reader(CgroupReader):
    """cgroup v2: one directory; the peak is reset through the fd it is read from."""

    version = "v2"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def _f(self, name: str) -> str:
        return os.path.join(self.path, name)

    def sample(self) -> ResourceSample | None:
        current = _parse_int(self.files.read(self._f("memory.current")))
        if current is None and not os.path.isdir(self.path):
            return None
        usage = _parse_keyed(self.files.read(self._f("cpu.stat"))).get("usage_usec")
        oom = _parse_keyed(self.files.read(self._f("memory.events"))).get("oom_kill")
        read, write = _io_bytes_v2(self.files.read(self._f("io.stat")))
        return ResourceSample(
            cpu_time=None if usage is None else usage / 1e6,
            memory_current=current,
            memory_peak=_parse_int(self.files.read(self._f("memory.peak"))),
            pids=_parse_int(self.files.read(self._f("pids.current"))),
            disk_read_bytes=read,
            disk_write_bytes=write,
            oom_killed=None if oom is None else oom > 0,
            source="cgroup-v2",
        )

    def reset_peak(self) -> None:
        # Since Linux 6.12 writing to memory.peak resets the peak seen through
        # that open file, so the file is opened read-write and read through it.
        self.files.write(self._f("memory.peak"), b"reset")

    def procs(self) -> list[int]:
        data = self.files.read(self._f("cgroup.procs"))
        return [int(x) for x in (data or b"").split()]


def cgroup_reader_for(pid: int) -> CgroupReader | None:
    """The reader for ``pid``'s cgroup (v1 or v2, from /proc/PID/cgroup), or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    v1_mounts, v2_mount = _cgroup_mounts()
    v1_dirs: dict[str, str] = {}
    v2_path: str | None = None
    for line in lines:
        _hid, controllers, path = line.split(":", 2)
        if not controllers and v2_mount is not None:
            v2_path = _join(v2_mount, path)
        for ctl in controllers.split(","):
            if ctl in v1_mounts:
                v1_dirs[ctl] = _join(v1_mounts[ctl], path)
    if "memory" in v1_dirs and os.path.isdir(v1_dirs["memory"]):
        return CgroupV1Reader(v1_dirs)
    if v2_path and os.path.exists(os.path.join(v2_path, "memory.current")):
        return CgroupV2Reader(v2_path)
    return None


# -- lifetime: live containers, background removal, exit hooks, stale sweep -------
class _Reaper:
    """Removes finished containers in a background thread (off the caller's path)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def remove(self, container_id: str) -> None:
        with self._cond:
            self._pending.add(container_id)
            self._queue.put(container_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="glsandbox-container-reaper", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                cid = self._queue.get(timeout=2.0)
            except queue.Empty:
                with self._cond:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                _remove_now(cid)
            finally:
                with self._cond:
                    self._pending.discard(cid)
                    self._cond.notify_all()

    def pending(self) -> set[str]:
        with self._cond:
            return set(self._pending)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued removal is done; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


def _remove_now(container_id: str) -> None:
    try:
        docker_client().api.remove_container(container_id, force=True, v=True)
    except Exception as exc:  # noqa: BLE001 - already gone, or the daemon is down
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status not in (404, 409):
            log.warning("removing container %s failed: %s", container_id[:12], exc)


_reaper = _Reaper()
_live: dict[str, ContainerWorker] = {}
_hooks_installed = False
_sweep_started = False


def flush_removals(timeout: float = 30.0) -> bool:
    """Wait for background removals (tests and benchmarks call this)."""
    return _reaper.flush(timeout)


def _install_exit_hooks() -> None:
    """atexit and (when nobody else handles it) SIGTERM: kill and remove our containers."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(shutdown_all)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    shutdown_all(timeout=5.0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def shutdown_all(timeout: float = 20.0) -> None:
    """Drain the warm pools, kill every live container of ours, wait for removal.

    Runs at interpreter exit and on SIGTERM; touches only containers this
    process made (a forked child leaves its parent's alone, see _after_fork).
    """
    pool_mod = sys.modules.get(f"{__package__}.docker_pool")
    if pool_mod is not None:
        with contextlib.suppress(Exception):
            pool_mod.drain_all(wait=True)
    for worker in list(_live.values()):
        if worker.owner_pid != os.getpid():
            continue
        with contextlib.suppress(Exception):
            worker.kill()
            worker.cleanup()
    _reaper.flush(timeout)


def _after_fork() -> None:
    """In a forked child: forget the parent's client, containers and pools (never kill them)."""
    global _client, _reaper, _sweep_started
    _client = None
    _live.clear()
    _reaper = _Reaper()
    _sweep_started = True
    pool_mod = sys.modules.get(f"{__package__}.docker_pool")
    if pool_mod is not None:
        pool_mod.forget_all()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def sweep_stale() -> list[str]:
    """Remove containers of ours whose host process is gone; returns their ids.

    Only containers made from this pid namespace are judged (the recorded
    pid and start time must match a live process to count as alive).
    """
    removed: list[str] = []
    api = docker_client().api
    ours = _pidns()
    for c in api.containers(all=True, filters={"label": f"{LABEL}=1"}):
        labels = c.get("Labels") or {}
        if labels.get(LABEL_HOST_PIDNS, "") != ours:
            continue
        try:
            pid = int(labels.get(LABEL_HOST_PID, ""))
        except ValueError:
            continue
        if _proc_start_ticks(pid) == labels.get(LABEL_HOST_START) and pid > 0:
            continue
        _remove_now(c["Id"])
        removed.append(c["Id"])
    if removed:
        log.info("removed %d stale sandbox container(s)", len(removed))
    return removed


def _sweep_once_in_background() -> None:
    global _sweep_started
    if _sweep_started:
        return
    _sweep_started = True

    def run() -> None:
        with contextlib.suppress(Exception):
            sweep_stale()

    threading.Thread(target=run, name="glsandbox-container-sweep", daemon=True).start()


# -- the worker -------------------------------------------------------------------
def _peer_pid(conn: socket.socket) -> int | None:
    fmt = "3i"
    try:
        data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(fmt))
    except (OSError, AttributeError):
        return None
    pid = int(struct.unpack(fmt, data)[0])
    return pid or None


def _in_container(pid: int, container_id: str) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            return container_id in fh.read()
    except OSError:
        return False


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _pidfd(pid: int | None) -> int | None:
    if pid is None or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


# ioctl(pidfd, PIDFD_GET_INFO) with PIDFD_INFO_EXIT (Linux 6.15+): the exit
# status of a process that is not our child, once it has been reaped.
_PIDFD_GET_INFO = (3 << 30) | (64 << 16) | (0xFF << 8) | 11
_PIDFD_INFO_EXIT = 0x8


def _pidfd_exit_code(pidfd: int | None) -> int | None:
    """Popen-style return code of the process behind ``pidfd``, or None if unknown."""
    if pidfd is None:
        return None
    buf = bytearray(64)
    struct.pack_into("Q", buf, 0, _PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, _PIDFD_GET_INFO, buf)
    except OSError:
        return None  # older kernel, or not reaped yet
    if not struct.unpack_from("Q", buf, 0)[0] & _PIDFD_INFO_EXIT:
        return None
    return os.waitstatus_to_exitcode(struct.unpack_from("i", buf, 60)[0])


def _returncode(status: int) -> int:
    """Docker's exit status to Popen's convention (128+N from docker-init -> -N)."""
    if 128 < status <= 128 + 64:
        return -(status - 128)
    return status


class ContainerWorker(WorkerProcess):
    """A worker running in one container; created by :func:`launch_worker`.

    ``pid`` is the worker's host pid (from SO_PEERCRED); ``init_pid`` is the
    container's init (docker-init), whose death ends the container. With a
    host-visible runtime (runc) signals go straight to those pids; otherwise
    (runsc) through the Docker API.
    """

    def __init__(
        self,
        *,
        container_id: str,
        sock: socket.socket,
        worker_pid: int | None,
        init_pid: int | None,
        image: str,
        runtime: str | None,
        backend: str,
        settings: dict[str, Any],
    ) -> None:
        self.container_id = container_id
        self.sock = sock
        self.pid = worker_pid or init_pid or 0
        self.init_pid = init_pid
        self.image = image
        self.runtime = runtime
        self.backend = backend
        self.settings = settings
        self.session_id: str | None = settings.get("labels", {}).get(LABEL_SESSION)
        self.pooled = False
        self.created_at = time.monotonic()
        self._host_signals = runtime is None and worker_pid is not None
        self._pidfd = _pidfd(init_pid)
        self._worker_pidfd = _pidfd(worker_pid) if worker_pid != init_pid else None
        self._cgroup = cgroup_reader_for(init_pid) if init_pid else None
        self._returncode: int | None = None
        self._last_sample: ResourceSample | None = None
        self.owner_pid = os.getpid()
        self._oom = False
        self._killed = False
        self._cleaned = False
        self._death_seen = False
        self._lock = threading.Lock()

    # -- Popen-like ----------------------------------------------------------
    def _api(self) -> Any:
        return docker_client().api

    def _alive_fast(self) -> bool | None:
        """True/False from the init pidfd, None when we have no pidfd."""
        if self._pidfd is None:
            return None
        try:
            ready, _, _ = select.select([self._pidfd], [], [], 0)
        except (OSError, ValueError):
            return None
        return not ready

    def _snapshot_at_worker_death(self) -> None:
        """Read the cgroup once the worker process itself has died (runc).

        The worker dies before docker-init does, and the cgroup (peak, OOM
        counter) is deleted soon after docker-init: reading it at the
        worker's death keeps an OOM kill's peak. No-op without a worker pidfd
        (gVisor: the sentry is the container's init).
        """
        fd = self._worker_pidfd
        if self._death_seen or fd is None or self._cgroup is None:
            return
        try:
            ready, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):
            return
        if ready:
            self._death_seen = True
            seen = self._cgroup.sample()
            if seen is not None:
                self._last_sample = seen
                self._oom = self._oom or bool(seen.oom_killed)

    def poll(self) -> int | None:
        if self._returncode is not None:
            return self._returncode
        self._snapshot_at_worker_death()
        alive = self._alive_fast()
        if alive is None:
            try:
                state = self._api().inspect_container(self.container_id)["State"]
            except Exception:  # noqa: BLE001 - container gone: treat as ended
                self._returncode = -signal.SIGKILL if self._killed else -1
                return self._returncode
            alive = bool(state.get("Running"))
        if alive:
            return None
        self._finish()
        return self._returncode

    def _finish(self) -> None:
        """Record the exit status and OOM flag (death path only).

        From the kernel (pidfd exit info, cgroup OOM counter) where it has
        them, else from the daemon (``docker wait`` + inspect, ~50 ms later).
        """
        with self._lock:
            if self._returncode is not None:
                return
            if self._killed and not self._oom:
                # We sent the SIGKILL: no need to ask the daemon how it ended.
                self._returncode = -signal.SIGKILL
                return
            # The cgroup outlives the worker until the runtime deletes it:
            # read it first (the peak and OOM counter at death). Under gVisor
            # the sentry is the init whose death we noticed, so this races
            # with `runsc delete`, but is usually first.
            seen = self._cgroup.sample() if self._cgroup is not None else None
            if seen is not None:
                self._last_sample = seen
                self._oom = self._oom or bool(seen.oom_killed)
            code = _pidfd_exit_code(self._worker_pidfd)
            if code is not None:
                # Straight from the kernel (no daemon round trip); OOM from the cgroup.
                if seen is not None:
                    self._returncode = code
                    return
                if code != -signal.SIGKILL:
                    self._returncode = code
                    return
            status: int | None = None
            try:
                api = self._api()
                status = int(api.wait(self.container_id, timeout=10).get("StatusCode", -1))
                if status != 0:
                    state = api.inspect_container(self.container_id)["State"]
                    self._oom = self._oom or bool(state.get("OOMKilled"))
            except Exception as exc:  # noqa: BLE001 - daemon trouble: keep what we know
                log.debug("exit status of %s unavailable: %s", self.container_id[:12], exc)
            if status is None or status < 0:
                self._returncode = -signal.SIGKILL if self._killed else -1
            else:
                self._returncode = _returncode(status)

    def wait(self, timeout: float | None = None) -> int | None:
        if self._returncode is not None:
            return self._returncode
        if self._pidfd is not None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                fds = [self._pidfd]
                if not self._death_seen and self._worker_pidfd is not None and self._cgroup is not None:
                    fds.append(self._worker_pidfd)  # to snapshot the cgroup at once
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    ready, _, _ = select.select(fds, [], [], left)
                except (OSError, ValueError):
                    return self.poll()
                if self._pidfd in ready or not ready:
                    break
                self._snapshot_at_worker_death()
                self._death_seen = True  # never select on it again
            if not ready:
                return None
            return self.poll()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = self.poll()
            if rc is not None:
                return rc
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def send_signal(self, signum: int) -> None:
        if self.poll() is not None:
            return
        if self._host_signals:
            try:
                os.kill(self.pid, signum)
                return
            except ProcessLookupError:
                return
            except PermissionError:
                pass
        with contextlib.suppress(Exception):
            self._api().kill(self.container_id, signal=int(signum))

    def kill(self) -> None:
        """SIGKILL the container's init (the whole pid namespace dies with it)."""
        if self.poll() is not None:
            return
        self._killed = True
        if self._cgroup is not None:
            before = self._cgroup.sample()
            if before is not None:
                self._last_sample = before
                self._oom = self._oom or bool(before.oom_killed)
        sent = False
        if self._host_signals and self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                sent = True
            except ProcessLookupError:
                sent = True
            except PermissionError:
                pass
        if not sent:
            with contextlib.suppress(Exception):
                self._api().kill(self.container_id)
        if self.wait(10.0) is None:
            # The daemon did not stop it: remove it synchronously, by force.
            _remove_now(self.container_id)
            self._returncode = -signal.SIGKILL

    def cleanup(self) -> None:
        """Close our ends and queue the container's removal (idempotent)."""
        with self._lock:
            if self._cleaned:
                return
            self._cleaned = True
        if self.poll() is None:
            self.kill()
        with contextlib.suppress(OSError):
            self.sock.close()
        for fd in (self._pidfd, self._worker_pidfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._pidfd = self._worker_pidfd = None
        if self._cgroup is not None:
            self._cgroup.close()
        _live.pop(self.container_id, None)
        _reaper.remove(self.container_id)

    # -- facts ----------------------------------------------------------------
    def exit_info(self) -> ExitInfo:
        rc = self.poll()
        return ExitInfo(rc, "oom" if self._oom else None)

    def sample(self) -> ResourceSample:
        """cgroup files read from the host; the stats API where they are not visible.

        After the container is gone: the last reading (taken at the latest
        when the worker's death was noticed, so an OOM kill keeps its peak).
        """
        if self._cgroup is not None:
            s = self._cgroup.sample()
            if s is not None:
                if s.oom_killed:
                    self._oom = True
                self._last_sample = s
                return s
            if self._last_sample is not None:
                last = dataclasses.replace(self._last_sample, oom_killed=self._oom)
                last.source += " (at exit)"
                return last
            return ResourceSample(oom_killed=self._oom or None, source=f"cgroup-{self._cgroup.version}")
        return self._stats_sample()

    def _stats_sample(self) -> ResourceSample:
        try:
            st = self._api().stats(self.container_id, stream=False, one_shot=True)
        except Exception:  # noqa: BLE001 - gone or unsupported: nothing measured
            return ResourceSample(source="docker-stats")
        mem = st.get("memory_stats") or {}
        cpu = ((st.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
        return ResourceSample(
            cpu_time=None if cpu is None else cpu / 1e9,
            memory_current=mem.get("usage"),
            memory_peak=mem.get("max_usage"),
            pids=(st.get("pids_stats") or {}).get("current"),
            source="docker-stats",
        )

    def reset_peak(self) -> None:
        if self._cgroup is not None:
            self._cgroup.reset_peak()

    def host_pids(self) -> list[int]:
        if self.poll() is not None:
            return []
        if self._cgroup is not None:
            pids = self._cgroup.procs()
            if pids:
                return pids
        return [p for p in (self.init_pid, self.pid) if p]

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "backend": self.backend,
            "container_id": self.container_id[:12],
            "image": self.image,
            "runtime": self.runtime or "runc",
            "pooled": self.pooled,
            "network": "none",
            "read_only_root": bool(s.get("read_only")),
            "cap_drop": s.get("cap_drop"),
            "no_new_privileges": True,
            "seccomp": "glsandbox: allow by default, EPERM for escape-class syscalls"
            + (" (enforced by gVisor's sentry)" if self.runtime == RUNSC else ""),
            "kernel": "gVisor (user-space kernel)" if self.runtime == RUNSC else "host",
            "user": s.get("user"),
            "memory_limit": s.get("mem_limit"),
            "nano_cpus": s.get("nano_cpus"),
            "pids_limit": s.get("pids_limit"),
            "process_limit": _process_limit(s, self.runtime),
            "tmpfs": s.get("tmpfs"),
            "cgroup": self._cgroup.version if self._cgroup else None,
            "metrics_source": f"cgroup-{self._cgroup.version}" if self._cgroup else "docker-stats",
            "execve_denied": False,
        }


def _process_limit(settings: dict[str, Any], runtime: str | None) -> str | None:
    """How ``max_processes`` is enforced for these settings (describe())."""
    pids = settings.get("pids_limit")
    if runtime == RUNSC:
        nproc = next((u["soft"] for u in settings.get("ulimits", []) if u["name"] == "nproc"), None)
        if nproc is None:
            return None
        return f"RLIMIT_NPROC {nproc} in gVisor's kernel; host pids cgroup {pids} (backstop for the sentry)"
    return None if pids is None else f"pids cgroup {pids}"


class _EarlyExit(Exception):
    def __init__(self, status: int, logs: str) -> None:
        super().__init__(status)
        self.status = status
        self.logs = logs


def _accept(listener: socket.socket, api: Any, container_id: str, timeout: float) -> socket.socket:
    """Accept the worker's connection; notice a container that exits first."""
    deadline = time.monotonic() + timeout
    check_every = 0.25
    next_check = time.monotonic() + check_every
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise SandboxCrashedError(f"the container worker did not connect within {timeout:g} s")
        wait = max(0.0, min(next_check, deadline) - now)
        ready, _, _ = select.select([listener], [], [], wait)
        if ready:
            conn, _ = listener.accept()
            return conn
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + check_every
            state = api.inspect_container(container_id)["State"]
            if not state.get("Running"):
                status = int(api.wait(container_id, timeout=10).get("StatusCode", -1))
                logs = api.logs(container_id, tail=20).decode("utf-8", "replace")
                raise _EarlyExit(status, logs)


def launch_worker(
    settings_for: Callable[[str], dict[str, Any]],
    *,
    backend: str = "container",
    connect_timeout: float = CONNECT_TIMEOUT,
) -> ContainerWorker:
    """Create and start one container and return it connected (host side).

    ``settings_for(socket_dir)`` returns :func:`container_settings` for the
    private socket directory made here. Undoes everything on failure.
    Called by :meth:`ContainerBackend.start` and the warm pool.
    """
    docker = docker_module()
    api = docker_client().api
    _install_exit_hooks()
    _sweep_once_in_background()
    with contextlib.ExitStack() as undo:
        outer = tempfile.mkdtemp(prefix="glsandbox-ctr-")
        undo.callback(shutil.rmtree, outer, True)
        sock_dir = os.path.join(outer, "s")
        os.mkdir(sock_dir)
        # Only the container's user needs to reach the socket; the 0700 outer
        # directory keeps every other host user out.
        os.chmod(sock_dir, 0o711)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        undo.callback(listener.close)
        listener.bind(os.path.join(sock_dir, "sock"))
        os.chmod(os.path.join(sock_dir, "sock"), 0o666)
        listener.listen(1)
        settings = settings_for(sock_dir)
        image = str(settings["image"])
        runtime = settings.get("runtime")
        try:
            container_id = api.create_container(**create_kwargs(api, settings))["Id"]
        except docker.errors.ImageNotFound as exc:
            raise BackendUnavailableError(backend, f"image {image} is not present", image_hint(image)) from exc
        except docker.errors.APIError as exc:
            raise BackendUnavailableError(
                backend,
                f"the Docker daemon refused to create the container: {exc.explanation or exc}",
                "see `glsandbox doctor`",
            ) from exc
        except docker.errors.DockerException as exc:
            raise BackendUnavailableError(
                backend, f"the Docker daemon is not reachable ({exc})", "run scripts/dockerd-up"
            ) from exc
        undo.callback(_remove_now, container_id)
        try:
            api.start(container_id)
            conn = _accept(listener, api, container_id, connect_timeout)
        except _EarlyExit as exc:
            if exc.status == VERSION_MISMATCH_EXIT:
                raise BackendUnavailableError(
                    backend,
                    f"image {image}: {exc.logs.strip().splitlines()[-1] if exc.logs.strip() else 'wrong python'}",
                    image_hint(image),
                ) from None
            raise SandboxCrashedError(
                f"the container worker exited with status {exc.status} before connecting: {exc.logs.strip()[-2000:]}",
                returncode=_returncode(exc.status),
            ) from None
        except docker.errors.APIError as exc:
            why = str(exc.explanation or exc)
            hint = "see `glsandbox doctor`"
            if runtime == RUNSC and "root network namespace" in why:
                hint = "register runsc with --network=none in its runtimeArgs (scripts/dockerd-up does)"
            raise BackendUnavailableError(
                backend, f"the Docker daemon could not start the container: {why}", hint
            ) from exc
        undo.callback(conn.close)
        worker_pid = _peer_pid(conn)
        init_pid: int | None = None
        # runc: the peer is the worker itself; runsc: the gofer, which connects
        # on the sandboxed worker's behalf (--host-uds). Either way a host
        # process that must be inside our container's cgroup.
        if worker_pid is None or not _in_container(worker_pid, container_id):
            raise SandboxSecurityError("the transport socket was connected from outside the container")
        if runtime is None:
            parent = _parent_pid(worker_pid)
            init_pid = parent if parent and _in_container(parent, container_id) else worker_pid
        else:
            # The worker has no host pid; the container's is the sentry's.
            worker_pid = None
            init_pid = int(api.inspect_container(container_id)["State"].get("Pid") or 0) or None
        worker = ContainerWorker(
            container_id=container_id,
            sock=conn,
            worker_pid=worker_pid,
            init_pid=init_pid,
            image=image,
            runtime=runtime,
            backend=backend,
            settings=settings,
        )
        _live[container_id] = worker
        undo.pop_all()
    # The connection is made: nothing else may connect, and nothing stays on disk.
    listener.close()
    shutil.rmtree(outer, ignore_errors=True)
    return worker


# -- the backend -------------------------------------------------------------------
class ContainerBackend(SandboxBackend):
    """Docker container per worker; warm pool when ``GLSANDBOX_CONTAINER_POOL`` > 0.

    Created by the session through the registry; :meth:`start` is its only
    worker-making call.
    """

    name: ClassVar[str] = "container"
    isolation_type: ClassVar[IsolationType] = IsolationType.CONTAINER
    strength: ClassVar[int] = 40
    needs_daemon: ClassVar[bool] = True
    runtime: ClassVar[str | None] = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return check_available(backend=cls.name, runtime=cls.runtime)

    @classmethod
    def unavailable_hint(cls) -> str:
        return (
            "install and start Docker (scripts/install-system-deps; scripts/dockerd-up), "
            f"then build the image with `{BUILD_SCRIPT}`"
        )

    def settings(self, *, session_id: str, socket_dir: str) -> dict[str, Any]:
        """:func:`container_settings` for this backend's config and runtime."""
        return container_settings(
            self.config, session_id=session_id, socket_dir=socket_dir, runtime=self.runtime, backend=self.name
        )

    def pool_key(self) -> str:
        """What a pooled container must share with this config to be handed out."""
        return settings_key(self.settings(session_id="pool", socket_dir="<socket>"))

    def _launch(self, session_id: str) -> ContainerWorker:
        return launch_worker(
            lambda sock_dir: self.settings(session_id=session_id, socket_dir=sock_dir), backend=self.name
        )

    def start(self, *, session_id: str) -> WorkerProcess:
        from . import docker_pool

        if docker_pool.pool_size() <= 0:
            return self._launch(session_id)
        pool = docker_pool.get_pool(self.pool_key(), lambda: self._launch("pool"), label=self.name)
        worker = pool.take()
        if worker is None:
            worker = self._launch(session_id)
        else:
            worker.session_id = session_id
        pool.refill()
        return worker

    def prewarm(self) -> None:
        """Fill the warm pool for this config in the background (kernel/magic start-up)."""
        from . import docker_pool

        if docker_pool.pool_size() > 0:
            docker_pool.get_pool(self.pool_key(), lambda: self._launch("pool"), label=self.name).refill()


__all__ = [
    "ESCAPE_SYSCALLS",
    "RUNSC",
    "ContainerBackend",
    "ContainerWorker",
    "container_settings",
    "default_image",
    "flush_removals",
    "launch_worker",
    "seccomp_profile",
    "shutdown_all",
    "sweep_stale",
]
