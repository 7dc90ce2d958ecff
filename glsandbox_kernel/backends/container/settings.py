"""The container's settings and seccomp profile (host side, pure: starts nothing).

:func:`container_settings` builds the keyword arguments of one worker's
container and is shared by CONTAINER and GVISOR (``runtime="runsc"``):
network none, read-only root, tmpfs ``/tmp`` and working directory,
``cap_drop=ALL``, ``no-new-privileges``, our seccomp profile, user 65534,
memory/cpu/pids limits, rlimits, labels naming the session and the host
process, a scrubbed environment, the worker code bound read-only.

Two seccomp layers, both from :mod:`glsandbox_kernel.confinement.seccomp`:

- the OCI profile Docker hands the runtime (:func:`oci_profile`, from the policy);
- the same policy's BPF program, loaded by the sandbox-side bootstrap
  (:mod:`glsandbox_kernel.worker.bootstrap`) before the worker starts, with
  a user-notification listener the host supervisor answers when the kernel
  the worker meets can pass one (runc: the host's; see :func:`supervised`).

Stacked filters answer with the strictest action, and ERRNO beats
USER_NOTIF, so when the supervisor is in use the OCI profile leaves the
escape-class syscalls to the bootstrap's filter (which notifies); the host
refuses a container whose hello brings no listener (see :mod:`.backend`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config import OSSandboxConfig
from ...exceptions import SandboxConfigError
from ...hidden_project import note_hidden
from . import images, limits, owner
from .bundle import BUNDLE_PATH, bundle_bind, bundle_for

# the creator's labels live in .owner; these names are kept here for older imports
from .owner import LABEL as LABEL
from .owner import LABEL_HOST_PID as LABEL_HOST_PID
from .owner import LABEL_HOST_PIDNS as LABEL_HOST_PIDNS
from .owner import LABEL_HOST_START as LABEL_HOST_START

log = logging.getLogger("glsandbox.container")

if TYPE_CHECKING:
    from ...confinement.seccomp import SeccompPolicy

# -- names shared by the host and the container --------------------------------
LABEL_SESSION = "glsandbox.session"
LABEL_BACKEND = "glsandbox.backend"

SOCKET_DIR = "/run/glsandbox"
SOCKET_PATH = f"{SOCKET_DIR}/sock"
REPORT_PATH = f"{SOCKET_DIR}/report"
#: Where the host's network proxy socket appears (its own directory, bound read-only).
NET_DIR = "/run/glsandbox-net"
PROXY_PATH = f"{NET_DIR}/proxy"
SITE_DIR = "/opt/glsandbox/site"
DEPS_DIR = "/opt/glsandbox/deps"
WORK_DIR = "/work"
SANDBOX_USER = "65534:65534"
BOOTSTRAP = f"{SITE_DIR}/glsandbox_kernel/worker/bootstrap.py"
#: The command runs the bootstrap as an imported module, not as a script: a
#: script is compiled from source at every start (~8 ms), a module loads from
#: the snapshot's pyc (:mod:`.code`). ``sys.path[0]`` (``''`` under ``-c``)
#: becomes the bootstrap's directory, which the bootstrap then drops again.
BOOTSTRAP_CODE = f"import sys; sys.path[0] = {os.path.dirname(BOOTSTRAP)!r}; import bootstrap; bootstrap.main(sys.argv)"

#: gVisor's OCI runtime. Under it the worker meets gVisor's kernel (the
#: sentry), which differs from runc in ways the settings builder accounts for:
#: - the sentry applies the OCI seccomp profile itself (``--oci-seccomp``),
#:   always with EPERM (runsc 2022 ignores ``errnoRet``), so the clone3 ->
#:   ENOSYS rule is left out: the sentry has no clone3 (ENOSYS natively) and
#:   an EPERM there would stop libc from falling back to clone;
#: - the sentry has no seccomp user notifications, and a host fd cannot
#:   cross its gofer: no supervisor, the profile and the bootstrap's filter
#:   deny with EPERM (``doctor`` and ``describe()`` say so);
#: - the host cgroup holds the sentry's and the gofer's threads (~60 idle)
#:   and, on the ptrace platform, a stub process per guest address space
#:   with a stub thread per sentry thread that ran in it (measured: ~11 host
#:   tasks per guest process, <= 1 per extra guest thread). Hitting the host
#:   pids limit kills the sentry (Go: "failed to create new OS thread", exit
#:   2) instead of failing the guest's clone. So ``max_processes`` is enforced
#:   inside, exactly, by RLIMIT_NPROC (the sentry counts only its own tasks;
#:   under runc it would count every host process of uid 65534), and the host
#:   pids limit is a backstop of RUNSC_HOST_TASKS_BASE + PER_TASK * N.
RUNSC = "runsc"  # the same name confinement.seccomp.RUNSC uses
RUNSC_HOST_TASKS_BASE = 128
RUNSC_HOST_TASKS_PER_TASK = 16

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


# -- seccomp -----------------------------------------------------------------------
def supervised(runtime: str | None) -> bool:
    """Whether the host supervisor can answer this runtime's escape-class syscalls.

    runc: the host kernel runs the worker, so when it has seccomp user
    notifications the bootstrap's listener reaches the host. runsc: never.
    """
    from ...confinement import seccomp

    return runtime != RUNSC and seccomp.notify_supported()


def seccomp_policy(config: OSSandboxConfig, runtime: str | None) -> SeccompPolicy:
    """The project's one policy for this config: notifying where :func:`supervised`.

    As in NAMESPACE, ``detect_escape_attempts=False`` turns the supervisor
    off (everything it would see is then denied with EPERM, unrecorded).
    """
    from ...confinement.seccomp import SeccompPolicy

    policy = SeccompPolicy.for_config(config, notify=config.detect_escape_attempts and supervised(runtime))
    if runtime == RUNSC:
        detection = (
            "untrusted: the sandbox's own reports (gVisor has no seccomp user notifications; denied inside by EPERM)"
            if config.detect_escape_attempts
            else "not possible: gVisor has no seccomp user notifications (denied inside by EPERM, unseen)"
        )
        policy = dataclasses.replace(policy, detection=detection)
    return policy


def seccomp_section(policy: SeccompPolicy) -> tuple[dict[str, Any], str | None]:
    """The bootstrap's seccomp section (the policy on the wire) and the policy's BPF program, packed, in hex.

    The program is the one NAMESPACE's children load for the same policy
    (:func:`~glsandbox_kernel.confinement.seccomp.packed_filter`), built here
    once: the bootstrap only loads it (:mod:`glsandbox_kernel.confinement.seccomp_load`),
    so a fresh container never imports the policy's module, its schema check or
    the builder (dataclasses, inspect, ast: 7-11 ms CPU of its start here). The section
    says what the program is (the host's own description of the container,
    the hello's report).
    """
    from ...confinement.seccomp import packed_filter
    from ...confinement.sections import to_wire

    return dict(to_wire(policy)), packed_filter(policy).hex() if policy.enabled else None


def wants_reports(config: OSSandboxConfig, section: dict[str, Any]) -> bool:
    """Whether the bootstrap reports its own violations: a filter without notifications, detection on."""
    return bool(config.detect_escape_attempts and section.get("enabled") and not section.get("notify"))


def oci_profile(policy: SeccompPolicy, runtime: str | None = None) -> dict[str, Any]:
    """The policy's OCI profile, for a container whose bootstrap loads the same policy's BPF.

    Stacked filters answer with the strictest action and ERRNO beats
    USER_NOTIF, so where the policy notifies the escape class (names, clone
    with namespace flags, TIOCSTI/TIOCLINUX) is left to the bootstrap's
    filter, which sends it to the supervisor; the rest stays EPERM here.
    Without notifications the profile is the policy's as it stands.
    """
    from ...confinement import seccomp

    profile = policy.oci_profile(runtime)
    if not policy.notify:
        return profile
    escape = set(seccomp.ESCAPE)
    kept: list[dict[str, Any]] = []
    for rule in profile["syscalls"]:
        if rule.get("args") and rule["names"] in (["clone"], ["ioctl"]):
            continue  # notified by the bootstrap's filter
        names = [n for n in rule["names"] if n not in escape]
        if names:
            kept.append(dict(rule, names=names))
    return dict(profile, syscalls=kept)


# -- what the container mounts and runs ----------------------------------------------
@functools.cache
def package_dir() -> str:
    """The host directory of the ``glsandbox_kernel`` package (bound read-only; resolved once)."""
    return str(Path(__file__).resolve().parents[2])


def dependency_dirs() -> list[str]:
    """Host directories holding the worker's pure-Python dependencies.

    The running interpreter's site-packages (purelib/platlib) plus wherever
    cloudpickle lives; bound read-only under ``/opt/glsandbox/deps/N``.
    Resolved once per process (every container's settings need them).
    """
    return list(_dependency_dirs())


@functools.cache
def _dependency_dirs() -> tuple[str, ...]:
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
    return tuple(dirs)


def worker_binds() -> dict[str, dict[str, str]]:
    """Read-only binds of the worker code: ``{host_dir: {"bind": path, "mode": "ro"}}``.

    The package is bound as its compiled snapshot (:mod:`.code`: no container
    compiles it again), the dependency directories as they are.
    """
    from .code import worker_code_dir

    shown_as = f"{SITE_DIR}/glsandbox_kernel"
    binds = {worker_code_dir(package_dir(), shown_as): {"bind": shown_as, "mode": "ro"}}
    for i, d in enumerate(dependency_dirs()):
        binds.setdefault(d, {"bind": f"{DEPS_DIR}/{i}", "mode": "ro"})
    return binds


def network_section(config: OSSandboxConfig) -> dict[str, Any] | None:
    """The bootstrap's network section (NAMESPACE's): the relay to the host proxy, or None.

    The container keeps network none (loopback only); any network the config
    allows goes through the host's :class:`~glsandbox_kernel.confinement.network.NetworkProxy`
    behind :data:`PROXY_PATH`, reached by the in-sandbox TCP relay on 127.0.0.1.
    """
    from ...confinement.network import plan_network
    from ...confinement.sections import to_wire

    mode = config.network.mode
    if mode == "none":
        return None
    # loopback False: the runtime brings lo up in the container's namespace
    return dict(to_wire(dataclasses.replace(plan_network(mode=mode, proxy_socket=PROXY_PATH), loopback=False)))


def worker_command(
    binds: dict[str, dict[str, str]],
    seccomp: dict[str, Any] | None = None,
    network: dict[str, Any] | None = None,
    *,
    reports: bool = False,
    program: str | None = None,
    file_limit: int | None = None,
) -> list[str]:
    """The container's command: the sandbox-side bootstrap, which then serves the worker.

    ``seccomp`` and ``program``: :func:`seccomp_section` (the bootstrap loads
    ``program`` where ``seccomp`` is enabled). ``file_limit``: RLIMIT_NOFILE, set by
    the worker after its hello (no nofile ulimit: see :mod:`glsandbox_kernel.confinement.rlimits`).
    """
    spec = {
        "network": network,
        "python": images.host_python(),
        "deps": [b["bind"] for b in binds.values() if b["bind"].startswith(DEPS_DIR)],
        "site": SITE_DIR,
        "socket": SOCKET_PATH,
        "seccomp": seccomp,
        "seccomp_program": program,
        # no supervisor can see the worker's syscalls: it reports on itself (untrusted)
        "report_socket": REPORT_PATH if reports else None,
        "file_limit": file_limit,
    }
    return ["python3", "-s", "-E", "-c", BOOTSTRAP_CODE, json.dumps(spec, sort_keys=True, separators=(",", ":"))]


def _under(path: str, root: str) -> bool:
    path, root = path.rstrip("/") or "/", root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def _user_binds(config: OSSandboxConfig, hidden: dict[str, str]) -> dict[str, dict[str, str]]:
    """Binds the config asks for (project dir, readonly/writable paths); ``hidden`` gets an empty
    tmpfs over the output folder when it holds masked names. A bind that is or contains a blocked path
    (the Docker socket, /root, /home ...) is refused, and so is a named path with masked names; one the
    user names below a blocked folder (a project in the home, ``~/emissions``) is shown, as NAMESPACE shows it.
    """
    from ...project import container_masks, refuse_named_secrets

    fs = config.filesystem
    wanted: list[tuple[str, str, str, str]] = []
    if fs.project_dir and config.project_access != "none":  # the level decides (hidden at STRICT)
        secrets, out = container_masks(config)
        if out is not None and not secrets:  # the sandbox's own output folder: hidden, not the project
            hidden[f"{WORK_DIR}/project/{out}"] = "ro,nosuid,nodev,noexec,size=4k,mode=0000"
        note_hidden(fs.project_dir, secrets)  # a notice for the kernel's first cell and exec
        if not secrets:  # these binds cannot hide single names inside a folder: else the folder is not shown
            mode = "rw" if config.project_access == "write" else "ro"
            wanted.append(("project_dir", fs.project_dir, f"{WORK_DIR}/project", mode))
    wanted += [("readonly_paths", p, p, "ro") for p in fs.readonly_paths]
    wanted += [("writable_paths", p, p, "rw") for p in fs.writable_paths]
    binds: dict[str, dict[str, str]] = {}
    for field, host, target, mode in wanted:
        real = os.path.realpath(host)
        for blocked in fs.blocked_paths:  # one that is or holds a blocked path; a folder the user names
            if _under(blocked, host) or _under(blocked, real):  # below one (~/emissions) is shown, as NAMESPACE
                raise SandboxConfigError(f"filesystem.{field}", f"{host!r} overlaps the blocked path {blocked!r}")
        refuse_named_secrets(field, real, fs.masked_names, scan=field != "project_dir")
        if not os.path.exists(real):  # as NAMESPACE: not shown (a bind mount of nothing fails the create)
            log.info("container: not showing %s: it does not exist", host)
            continue
        binds[real] = {"bind": target, "mode": mode}
    return binds


def _environment(config: OSSandboxConfig, binds: dict[str, dict[str, str]]) -> dict[str, str]:
    from ..basic import scrubbed_env

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


def host_labels(session_id: str, backend: str) -> dict[str, str]:
    """Labels naming the session and the host process (:func:`.owner.labels`: for the sweep and the watcher)."""
    return {**owner.labels(), LABEL_SESSION: session_id, LABEL_BACKEND: backend}


def container_settings(
    config: OSSandboxConfig,
    *,
    session_id: str,
    socket_dir: str,
    runtime: str | None = None,
    image: str | None = None,
    backend: str = "container",
    proxy_dir: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create/run`` for one worker.

    Shared by CONTAINER and GVISOR (``runtime="runsc"``, which differs only
    in the seccomp profile's clone3 rule and in how the process limit is
    enforced: see :data:`RUNSC`). ``socket_dir`` is the private host
    directory holding the transport socket; ``proxy_dir`` the one holding
    the network proxy's socket (when the config allows any network). Pure:
    builds a dict, starts nothing (tests assert it directly).
    """
    lim = config.limits
    image = image or config.container_image or images.default_image()
    binds, hidden = worker_binds(), dict[str, str]()
    binds.update(bundle_bind(bundle_for(image, binds)))  # the snapshot's, once built (by launch)
    binds.update(_user_binds(config, hidden))
    if runtime != RUNSC:  # no ptys (``!cmd`` runs on pipes here): each would count in the host's kernel.pty.nr
        hidden["/dev/pts"] = "ro,nosuid,nodev,noexec,size=4k,mode=0755"  # /dev/ptmx links into it
    binds[socket_dir] = {"bind": SOCKET_DIR, "mode": "ro"}
    network = network_section(config)
    if network is not None:
        if proxy_dir is None:
            raise ValueError("the config allows network: container_settings needs the proxy's directory")
        binds[proxy_dir] = {"bind": NET_DIR, "mode": "ro"}
    # Docker's tmpfs defaults to noexec; "exec" only where new programs are allowed.
    tmpfs_opts = "rw,nosuid,nodev," + ("exec" if config.new_programs_allowed else "noexec")
    sizes = limits.scratch_sizes(lim.disk_quota_bytes, lim.memory_limit_bytes)
    work_opts = tmpfs_opts + (f",size={sizes['work']}" if sizes.get("work") else "")
    tmp_opts = tmpfs_opts + (f",size={sizes['tmp']}" if sizes.get("tmp") else "")
    uid, _, gid = SANDBOX_USER.partition(":")
    ulimits = limits.ulimits(config)
    policy = seccomp_policy(config, runtime)
    section, program = seccomp_section(policy)
    reports, files = wants_reports(config, section), lim.max_open_files
    settings: dict[str, Any] = {
        "image": image,
        "command": worker_command(binds, section, network, reports=reports, program=program, file_limit=files),
        "user": SANDBOX_USER,
        "environment": _environment(config, binds),
        "working_dir": next((b["bind"] for b in binds.values() if b["bind"] == f"{WORK_DIR}/project"), WORK_DIR),
        "hostname": "sandbox",
        "labels": host_labels(session_id, backend),
        "detach": True,
        # network none, and no libnetwork sandbox at all: the runtime makes a
        # fresh network namespace with only loopback (also ~150 ms faster).
        "network_mode": "none",
        "network_disabled": True,
        "read_only": True,
        "tmpfs": {"/tmp": tmp_opts + ",mode=1777", WORK_DIR: work_opts + f",uid={uid},gid={gid},mode=0700", **hidden},
        "volumes": binds,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true", "seccomp=" + json.dumps(oci_profile(policy, runtime))],
        "ipc_mode": "private",
        "init": True,
        "ulimits": ulimits,
        "log_config": {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
    }
    if sizes.get("shm"):
        settings["shm_size"] = sizes["shm"]
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


def bootstrap_spec(settings: dict[str, Any]) -> dict[str, Any]:
    """What the host told the bootstrap (the last word of the container's command)."""
    return dict(json.loads(settings["command"][-1]))


def seccomp_of(settings: dict[str, Any]) -> dict[str, Any]:
    """The bootstrap's seccomp section inside ``settings``."""
    return dict(bootstrap_spec(settings).get("seccomp") or {})


def settings_key(settings: dict[str, Any]) -> str:
    """A digest of everything that matters for reuse (pool key): all but per-use fields and the bundle (same code)."""
    stable = dict(settings)
    stable["labels"] = {k: v for k, v in settings.get("labels", {}).items() if k != LABEL_SESSION}
    per_use = (SOCKET_DIR, NET_DIR, BUNDLE_PATH)
    stable["volumes"] = {k: v for k, v in settings.get("volumes", {}).items() if v.get("bind") not in per_use}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def bind_mounts(binds: dict[str, dict[str, str]]) -> list[Any]:
    """``{host: {"bind": path, "mode": "ro"|"rw"}}`` as the API's ``HostConfig.Mounts`` (host side, at create).

    Not docker-py's ``binds`` strings (``host:path:mode``), which the daemon splits at every ``:``:
    a project folder named ``Q1:2026`` would be refused ("invalid volume specification"), by Docker
    and Podman alike. Each is what those strings made: a recursive bind, ``rprivate``, read-only
    unless ``rw``. Who calls: :func:`create_kwargs` and the bundle builder (:mod:`.launch`).
    """
    from docker.types import Mount

    return [
        Mount(b["bind"], host, type="bind", read_only=b.get("mode") != "rw", propagation="rprivate")
        for host, b in binds.items()
    ]


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
            host["mounts"] = bind_mounts(value)
        else:
            host[key] = value
    container["host_config"] = api.create_host_config(**host)
    return container
