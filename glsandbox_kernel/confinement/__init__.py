"""Linux confinement as an ordered list of steps (one module each).

Two functions, one per side of the trust boundary:

- :func:`build_child_plan` (HOST side) turns an :class:`OSSandboxConfig` and
  a backend name into a JSON-able dict: one section per step, absent or
  ``enabled: False`` when the step is off, plus ``report`` with the host's
  own fallbacks (e.g. no cgroups).
- :func:`apply_child_plan` (CHILD side) runs the steps in order in the
  freshly forked worker, before any untrusted code. Like nsjail's
  ``contain.cc``, it is a plain sequence; a step that is off returns at its
  first line.

Step order and why::

    cgroups       attach first (or, attach_by="host", the host moves the
                  processes during set-up): every sandbox process is charged
    namespaces    P0 -> P1 (unshare; P0 writes the id maps)
    mounts (1/2)  P1 opens the bind sources while it still has its host uid
    namespaces    P1 -> P2 (pid 1, init) -> P3 (the worker; only it returns)
    mounts (2/2)  tmpfs root, read-only binds, /proc, /dev, pivot_root
    process       environment (plan["env"]), umask, cwd (plan["cwd"])
    rlimits
    network       loopback up; the proxy relay's socket
    capabilities  bounding/ambient sets cleared, sandbox uid, capset(0)
    no_new_privs
    landlock      the same filesystem allowlist, enforced by the kernel
    seccomp       last: from here on nothing above can be undone
    (relay)       the proxy relay is forked last, confined like the worker

Child-side rules: single-threaded, no logging, little allocation; every
failure is a :class:`ConfinementError` naming the step, the call and errno.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from typing import Any

from ..config import OSSandboxConfig
from ..exceptions import SandboxConfigError
from ..linux import CLONE_NEWUSER, PR_SET_PDEATHSIG, libc, prctl
from . import capabilities, cgroups, landlock, mounts, namespaces, network, rlimits, seccomp
from ._common import ConfinementError

__all__ = [
    "BACKENDS",
    "HELPER_PROCESSES",
    "ChildResult",
    "ConfinementError",
    "apply_child_plan",
    "build_child_plan",
    "probe",
    "probe_cgroups",
    "probe_landlock",
    "probe_namespaces",
    "probe_seccomp",
    "probe_seccomp_notify",
    "probe_unprivileged_namespaces",
]

#: Backends this module can plan for.
BACKENDS = ("basic", "namespace", "chroot")
#: Processes of a namespaced sandbox besides the worker and its children
#: (P0, P1, the init P2 and the proxy relay): add to pids.max.
HELPER_PROCESSES = 4


@dataclasses.dataclass
class ChildResult:
    """What :func:`apply_child_plan` hands back to the worker (CHILD side).

    ``pass_fds``: fds the worker must send to the host in its first frame
    (SCM_RIGHTS) and then close: the seccomp listener. ``report``: which
    steps were applied and which fell back, and why (untrusted once it
    reaches the host: the host knows what it asked for).
    """

    pass_fds: list[int]
    report: dict[str, Any]


def build_child_plan(
    config: OSSandboxConfig,
    *,
    backend: str,
    workdir: str,
    cgroup: dict[str, Any] | None = None,
    proxy_socket: str | None = None,
) -> dict[str, Any]:
    """HOST side: the plan the child of ``backend`` must carry out.

    ``workdir``: the worker's working directory (a host directory for
    BASIC; the path *inside* the sandbox for NAMESPACE/CHROOT, where it is
    a private tmpfs). ``cgroup``: ``CgroupManager.child_section()``, or
    ``{"enabled": False, "unavailable": reason}``. ``proxy_socket``: the
    host path of the :class:`~.network.NetworkProxy` socket, bound into the
    sandbox when the network config allows any network.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    root = os.geteuid() == 0
    mode = config.network.mode
    report: dict[str, Any] = {"backend": backend}
    plan: dict[str, Any] = {"version": 1, "backend": backend, "report": report, "pdeathsig": True}

    if cgroup is None:
        report["cgroups"] = "not used: rlimits only"
    else:
        plan["cgroup"] = cgroup
        if not cgroup.get("enabled"):
            report["cgroups"] = cgroup.get("unavailable", "unavailable")

    namespaced = backend != "basic"
    read_only: list[str] = []
    read_write: list[str] = []
    if namespaced:
        if backend == "namespace":
            plan["namespaces"] = namespaces.plan_namespaces()
            uid, gid = namespaces.SANDBOX_UID, namespaces.SANDBOX_GID
        else:
            if not config.filesystem.root:
                raise SandboxConfigError("filesystem.root", "the CHROOT backend needs a root filesystem directory")
            plan["namespaces"] = namespaces.plan_namespaces(kinds=("mount", "pid", "net", "ipc", "uts", "cgroup"))
            uid = gid = namespaces.UNPRIVILEGED_HOST_ID
        use_proxy = mode != "none" and proxy_socket is not None
        if mode != "none" and proxy_socket is None:
            report["network"] = "network allowed but no proxy given: loopback only"
        m = mounts.plan_mounts(
            config, workdir=workdir, uid=uid, gid=gid, proxy_socket=proxy_socket if use_proxy else None
        )
        plan["mounts"] = m
        plan["network"] = network.plan_network(
            mode=mode if use_proxy else "none", proxy_socket=mounts.PROXY_SOCKET_PATH if use_proxy else None
        )
        read_only = [b["dst"] for b in m["binds"] if not b["rw"]] + ["/etc", "/proc"]
        if m["mode"] == "given_root":
            read_only.append("/")  # the CHROOT root is the user's choice, mounted read-only
        read_only += [s["dst"] for s in m["symlinks"] if not s["dst"].startswith("/etc/")]
        read_write = [b["dst"] for b in m["binds"] if b["rw"]] + ["/tmp", m["workdir"], "/dev/shm"]
        extra = HELPER_PROCESSES - 1  # P0 runs as another uid (root host) or in the parent namespace
    else:
        fs = config.filesystem
        blocked = tuple(fs.blocked_paths)
        read_only = [d for d in mounts.SYSTEM_DIRS if os.path.exists(d)] + mounts.python_paths()
        read_only += [
            os.path.abspath(p)
            for p in sys.path
            if p and os.path.isdir(p) and mounts._blocked_by(os.path.abspath(p), blocked) is None
        ]
        read_only += list(landlock.HOST_ETC_READABLE) + list(fs.readonly_paths) + ["/proc"]
        read_write = [workdir, *fs.writable_paths, "/dev/shm"]
        if fs.project_dir:
            (read_write if fs.project_writable else read_only).append(fs.project_dir)
        extra = 0

    plan["rlimits"] = rlimits.plan_rlimits(config.limits, extra_processes=extra)
    if backend == "namespace":
        caps = capabilities.plan_capabilities(
            uid=namespaces.SANDBOX_UID, gid=namespaces.SANDBOX_GID, dumpable=not root, setgroups=False
        )
    elif backend == "chroot":
        ids = namespaces.UNPRIVILEGED_HOST_ID
        caps = capabilities.plan_capabilities(uid=ids, gid=ids, dumpable=False, setgroups=True)
    else:
        caps = capabilities.plan_capabilities(uid=None, gid=None, dumpable=not root, setgroups=False)
    plan["capabilities"] = caps
    plan["no_new_privs"] = {"enabled": True}
    abi = landlock.landlock_abi()
    plan["landlock"] = landlock.plan_landlock(
        read_only=read_only,
        read_write=read_write,
        list_only=["/"] if namespaced else [],
        deny_tcp=backend == "basic" and mode == "none",
    )
    if abi == 0:
        report["landlock"] = "unavailable: kernel has no Landlock"
    ok, why = seccomp.supported()
    if ok:
        plan["seccomp"] = seccomp.plan_seccomp(
            deny_exec=not config.new_programs_allowed,
            notify=config.detect_escape_attempts,
            deny_inet=backend == "basic" and mode == "none",
        )
        if plan["seccomp"]["detection"] != "supervisor":
            report["escape_detection"] = plan["seccomp"]["detection"]
    else:
        report["seccomp"] = f"unavailable: {why}"
        report["escape_detection"] = "not possible: no seccomp"
    return plan


def apply_child_plan(plan: dict[str, Any]) -> ChildResult:
    """CHILD side: run every step of ``plan`` in order; returns only in the worker.

    Call in a freshly forked, single-threaded process, before any untrusted
    code. With namespaces the calling process (P0) and two more (P1, the
    init P2) stay behind: they never return from here, they wait and exit
    the way the worker exits. Raises :class:`ConfinementError` when a step
    fails (in P0 for namespace creation, else in the worker).
    """
    report: dict[str, Any] = dict(plan.get("report", {}))
    if plan.get("pdeathsig"):
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    ns = plan.get("namespaces")
    cgroups.attach_child(plan.get("cgroup"), report)
    namespaces.unshare_child(ns, report)  # P0 stays behind; from here: P1
    try:
        sources = mounts.open_sources_child(plan.get("mounts"), report)
    except BaseException:
        if ns and ns.get("enabled"):
            os._exit(255)  # P1 must never return
        raise
    namespaces.fork_init_child(ns, report)  # P1 and the init stay behind; from here: the worker
    mounts.setup_root_child(plan.get("mounts"), sources, report)
    _process_child(plan, report)
    rlimits.apply_rlimits_child(plan.get("rlimits"), report)
    network.loopback_up_child(plan.get("network"), report)
    relay = network.prepare_relay_child(plan.get("network"), report)
    capabilities.drop_capabilities_child(plan.get("capabilities"), report)
    capabilities.no_new_privs_child(plan.get("no_new_privs"), report)
    landlock.restrict_child(plan.get("landlock"), report)
    listener = seccomp.install_child(plan.get("seccomp"), report)
    network.start_relay_child(relay, plan.get("network"))
    return ChildResult(pass_fds=[] if listener is None else [listener], report=report)


def _process_child(plan: dict[str, Any], report: dict[str, Any]) -> None:
    """CHILD side: environment (replaced by ``plan["env"]``), umask, working directory.

    ``cwd`` applies only without a mounts step (which leaves the worker in
    its private working directory already).
    """
    env = plan.get("env")
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    if plan.get("umask") is not None:
        os.umask(int(plan["umask"]))
    cwd = plan.get("cwd")
    if cwd and not (plan.get("mounts") or {}).get("enabled"):
        try:
            os.chdir(cwd)
        except OSError as exc:
            raise ConfinementError("process", f"chdir({cwd!r})", exc.errno) from exc


def probe_namespaces() -> tuple[bool, str]:
    """HOST side: can this process create the sandbox's namespaces (user ns first)?"""
    return namespaces.userns_available()


def probe_unprivileged_namespaces() -> tuple[bool, str]:
    """HOST side: can an unprivileged user create them (probed as uid 65534 when root)?"""
    if os.geteuid() != 0:
        return namespaces.userns_available()
    pid = os.fork()
    if pid == 0:  # probe child: drop to nobody, try a user namespace
        code = 0
        try:
            os.setgroups([])
            os.setresgid(
                namespaces.UNPRIVILEGED_HOST_ID, namespaces.UNPRIVILEGED_HOST_ID, namespaces.UNPRIVILEGED_HOST_ID
            )
            os.setresuid(
                namespaces.UNPRIVILEGED_HOST_ID, namespaces.UNPRIVILEGED_HOST_ID, namespaces.UNPRIVILEGED_HOST_ID
            )
            code = 0 if _libc_unshare(CLONE_NEWUSER) == 0 else 1
        except OSError:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return True, "uid 65534 can create user namespaces"
    return False, "uid 65534 cannot create user namespaces (unprivileged user namespaces disabled)"


def _libc_unshare(flags: int) -> int:
    return int(libc().unshare(flags))


def probe_cgroups() -> tuple[bool, str]:
    """HOST side: can this process create sandbox cgroups (v2 or v1), and which controllers?"""
    return cgroups.available()


def probe_seccomp() -> tuple[bool, str]:
    """HOST side: can the seccomp filter be loaded here?"""
    return seccomp.supported()


def probe_seccomp_notify() -> tuple[bool, str]:
    """HOST side: do seccomp user notifications (the supervisor) work here?"""
    if seccomp.notify_supported():
        return True, "SECCOMP_RET_USER_NOTIF with SECCOMP_USER_NOTIF_FLAG_CONTINUE"
    return False, "no seccomp user notifications (kernel < 5.5?): escape-class syscalls are denied but not recorded"


def probe_landlock() -> tuple[bool, str]:
    """HOST side: the Landlock ABI of this kernel (0: none)."""
    abi = landlock.landlock_abi()
    return (
        abi > 0,
        f"Landlock ABI {abi}" if abi else "kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, lsm=landlock)",
    )


def probe() -> dict[str, tuple[bool, str]]:
    """HOST side: every probe above, by name (for ``glsandbox doctor``)."""
    return {
        "namespaces": probe_namespaces(),
        "unprivileged_namespaces": probe_unprivileged_namespaces(),
        "cgroups": probe_cgroups(),
        "seccomp": probe_seccomp(),
        "seccomp_notify": probe_seccomp_notify(),
        "landlock": probe_landlock(),
    }
