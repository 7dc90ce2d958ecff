"""Linux confinement as one ordered list of steps (one module each).

Each step has the same two functions, one per side of the trust boundary:

- ``plan_step(ctx)`` (HOST side) returns a frozen dataclass section, or None
  when the step is off, reading only the config and the backend's typed
  :class:`~.profile.ConfinementProfile` (never the backend's name);
- an ``apply`` function (CHILD side) ``apply(section, state)`` that returns
  at its first line when the section is None or disabled.

:data:`STEPS` lists them in order; :func:`build_child_plan` walks it to plan
a :class:`ChildPlan`, :func:`apply_child_plan` walks it again in the freshly
forked worker, before any untrusted code. Like nsjail's ``contain.cc`` it is
a plain sequence. The plan crosses to the child as plain data
(:func:`~.sections.to_wire`) and is rebuilt there with the schema check of
:func:`~.sections.from_wire`.

Step order and why::

    cgroup        attach first (or, attach_by="host", the host moves the
                  processes during set-up): every sandbox process is charged
    namespaces    P0 -> P1 (unshare; P0, or the zygote template, writes the id maps;
                  a zygote child cloned into its namespaces is the init already)
    mounts (1/2)  P1 opens the bind sources while it still has its host uid
    namespaces    P1 -> P2 (pid 1, init) -> P3 (the worker; only it returns)
    mounts (2/2)  tmpfs root, read-only binds, /proc, /dev, pivot_root
    process       environment, umask, cwd
    rlimits
    network       loopback up; the proxy relay's socket
    capabilities  bounding/ambient sets cleared, sandbox uid, capset(0)
    no_new_privs
    landlock      the same filesystem allowlist, enforced by the kernel
    seccomp       last: from here on nothing above can be undone
    network (2/2) the proxy relay is forked last, confined like the worker

Child-side rules: single-threaded, no logging, little allocation; every
failure is a :class:`ConfinementError` naming the step, the call and errno.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any

from ..config import OSSandboxConfig
from ..linux import CLONE_NEWUSER, PR_SET_PDEATHSIG, libc, prctl
from . import capabilities, cgroups, landlock, mounts, mounts_child, namespaces, network, process, rlimits, seccomp
from ._common import ChildState, ConfinementError, PlanContext, Step
from .capabilities import CapabilitiesSection, NoNewPrivsSection
from .cgroups import CgroupSection
from .landlock import LandlockSection
from .mounts import MountsSection
from .namespaces import NamespacesSection
from .network import NetworkSection
from .process import ProcessSection
from .profile import NAMESPACE_HELPER_PROCESSES, ConfinementProfile
from .rlimits import RlimitsSection
from .seccomp import SeccompPolicy
from .sections import from_wire, to_wire

__all__ = [
    "HELPER_PROCESSES",
    "STEPS",
    "ChildPlan",
    "ChildResult",
    "ConfinementError",
    "ConfinementProfile",
    "Step",
    "apply_child_plan",
    "build_child_plan",
    "from_wire",
    "probe",
    "probe_cgroups",
    "probe_landlock",
    "probe_namespaces",
    "probe_seccomp",
    "probe_seccomp_notify",
    "probe_unprivileged_namespaces",
    "to_wire",
]

#: Processes of a namespaced sandbox besides the worker and its children (see the profile).
HELPER_PROCESSES = NAMESPACE_HELPER_PROCESSES
#: The plan format; a child refuses any other.
PLAN_VERSION = 2

#: The steps in order. A step done in two halves appears twice.
STEPS: tuple[Step, ...] = (
    Step("cgroup", cgroups.plan_step, cgroups.attach_child),
    Step("mounts", None, mounts_child.make_trees_child),  # idmapped binds: host root, before the userns
    Step("namespaces", namespaces.plan_step, namespaces.unshare_child),  # P0 stays behind
    Step("mounts", mounts.plan_step, mounts_child.open_sources_child),  # P1, still the host uid
    Step("namespaces", None, namespaces.fork_init_child),  # P1 and the init stay behind
    Step("mounts", None, mounts_child.setup_root_child),
    Step("process", process.plan_step, process.apply_child),
    Step("rlimits", rlimits.plan_step, rlimits.apply_rlimits_child),
    Step("network", network.plan_step, network.prepare_child),
    Step("capabilities", capabilities.plan_step, capabilities.drop_capabilities_child),
    Step("no_new_privs", capabilities.plan_no_new_privs, capabilities.no_new_privs_child),
    Step("landlock", landlock.plan_step, landlock.restrict_child),
    Step("seccomp", seccomp.plan_step, seccomp.install_child),
    Step("network", None, network.start_relay_child),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChildPlan:
    """What the child must carry out: one section per step (None: the step is off).

    ``report`` holds the host's own fallbacks (e.g. no cgroups); the child
    adds what it applied. ``pdeathsig``: the child dies with the template.
    """

    version: int = PLAN_VERSION
    pdeathsig: bool = True
    report: dict[str, str] = dataclasses.field(default_factory=dict)
    cgroup: CgroupSection | None = None
    namespaces: NamespacesSection | None = None
    mounts: MountsSection | None = None
    process: ProcessSection | None = None
    rlimits: RlimitsSection | None = None
    network: NetworkSection | None = None
    capabilities: CapabilitiesSection | None = None
    no_new_privs: NoNewPrivsSection | None = None
    landlock: LandlockSection | None = None
    seccomp: SeccompPolicy | None = None

    def to_wire(self) -> dict[str, Any]:
        """Plain data for the zygote frame (and the warm-pool key)."""
        return dict(to_wire(self))

    @classmethod
    def from_wire(cls, data: Any) -> ChildPlan:
        """CHILD side: rebuild and check a plan from a frame; refuses unknown/missing fields."""
        plan = from_wire(cls, data)
        if plan.version != PLAN_VERSION:
            raise ConfinementError("plan", f"version {plan.version} (this side speaks {PLAN_VERSION})")
        return plan


@dataclasses.dataclass
class ChildResult:
    """What :func:`apply_child_plan` hands back to the worker (CHILD side).

    ``pass_fds``: fds the worker must send to the host in its first frame
    (SCM_RIGHTS) and then close: the seccomp listener. ``report``: which
    steps were applied and which fell back, and why (untrusted once it
    reaches the host: the host knows what it asked for). ``file_limit``:
    the RLIMIT_NOFILE the worker sets right after its hello (see :mod:`.rlimits`).
    """

    pass_fds: list[int]
    report: dict[str, Any]
    file_limit: tuple[int, int] | None = None


def build_child_plan(
    config: OSSandboxConfig,
    *,
    profile: ConfinementProfile,
    workdir: str,
    cgroup: CgroupSection | None = None,
    proxy_socket: str | None = None,
    layout: Any = None,
) -> ChildPlan:
    """HOST side: the plan a child confined by ``profile`` must carry out.

    ``workdir``: the worker's working directory (a host directory on the
    host's filesystem; the path *inside* the sandbox with a root of its own,
    where it is a private tmpfs). ``cgroup``: ``Cgroup.child_section()``, or
    ``CgroupSection(enabled=False, unavailable=reason)``. ``proxy_socket``:
    the host path of the :class:`~.network.NetworkProxy` socket, bound into
    the sandbox when the network config allows any network. ``layout``: the
    :class:`~glsandbox_kernel.project.ProjectLayout` of ``config`` when the caller
    scanned the project folder already (one scan per start), else scanned here.
    """
    ctx = PlanContext(
        config=config, profile=profile, workdir=workdir, cgroup=cgroup, proxy_socket=proxy_socket, project=layout
    )
    for step in STEPS:
        if step.plan is not None and step.name not in ctx.sections:
            ctx.sections[step.name] = step.plan(ctx)
    return ChildPlan(report=dict(ctx.report), **ctx.sections)


def apply_child_plan(plan: ChildPlan | dict[str, Any]) -> ChildResult:
    """CHILD side: run every step of ``plan`` in order; returns only in the worker.

    ``plan`` arrives as plain data from the frame and is checked first.
    Call in a freshly forked, single-threaded process, before any untrusted
    code. With namespaces the calling process (P0) and two more (P1, the
    init P2) stay behind: they never return from here, they wait and exit
    the way the worker exits. Raises :class:`ConfinementError` when a step
    fails (in P0 for namespace creation, else in the worker).
    """
    if not isinstance(plan, ChildPlan):
        plan = ChildPlan.from_wire(plan)
    state = ChildState(report=dict(plan.report))
    if plan.pdeathsig:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    for step in STEPS:
        try:
            step.apply(getattr(plan, step.name), state)
        except BaseException:
            if state.intermediate:
                os._exit(255)  # a set-up process (P1) must never return
            raise
    return ChildResult(pass_fds=list(state.pass_fds), report=state.report, file_limit=state.file_limit)


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
