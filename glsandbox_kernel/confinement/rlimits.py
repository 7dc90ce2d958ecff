"""Step: resource limits with ``setrlimit(2)``.

Host side: :func:`plan_rlimits` turns :class:`ResourceLimits` into a
:class:`RlimitsSection`. Child side: :func:`apply_rlimits_child` sets them in the worker before
any untrusted code runs. Limits only ever go down (a hard limit the host
already has is never raised).

``RLIMIT_NPROC`` counts every task (thread) of the worker's *real uid* in
its user namespace, not the sandbox's. With a user namespace of its own
(NAMESPACE) that is the sandbox alone. Without one (BASIC, CHROOT) the uid
is shared: as an unprivileged host user it also counts the host process's
own threads, the zygote, the warm pool's spare workers, a previous worker
still being torn down and anything else the user runs. A bare limit of
``max_processes`` there left the worker no room even for its own fd
forwarder thread (setup died with EAGAIN). So for a shared uid the child
counts the uid's other tasks at set-up time and puts the limit that many
above ``max_processes``: the sandbox may add ``max_processes`` tasks to what
the uid already had (the bound moves as the uid's other tasks come and go;
the report says so).

``RLIMIT_NOFILE`` is lowered last: this step leaves the planned value in
``state.file_limit`` and the worker sets it (:func:`._common.lower_file_limit`)
right after its hello went out with the seccomp listener attached, before
any untrusted code runs. The kernel refuses ``SCM_RIGHTS`` with
``ETOOMANYREFS`` once the fds in flight of the sender's *real uid* (every
process of it, every sandbox mapped to it: host uid 65534 for NAMESPACE as
root, CHROOT and the containers; uid 0 for BASIC as root) exceed the
sender's soft ``RLIMIT_NOFILE`` (CAP_SYS_RESOURCE is gone by then). With
the sandbox's own limit (128 at STRICT) one cell that kept 253 fds in
flight on a socketpair it never reads made every other sandbox's start
fail. Until the hello the soft limit is raised to the inherited hard one:
a cell stops adding fds in flight at its own limit (plus one message of
253), far below it, unless its own limit is as high.
"""

from __future__ import annotations

import dataclasses
import os
import resource

from .. import procfs
from ..config import ResourceLimits
from ._common import ChildState, ConfinementError, PlanContext

#: Plan key -> ``resource`` constant name.
_NAMES = {
    "AS": "RLIMIT_AS",
    "CPU": "RLIMIT_CPU",
    "NOFILE": "RLIMIT_NOFILE",
    "NPROC": "RLIMIT_NPROC",
    "FSIZE": "RLIMIT_FSIZE",
    "CORE": "RLIMIT_CORE",
    "SIGPENDING": "RLIMIT_SIGPENDING",
}

#: RLIMIT_SIGPENDING of every sandbox (one place: the container's ulimits take it from here). The
#: kernel counts queued signals per *user* (ucounts), and a user namespace's count is charged to its
#: creator's as well, while each sigqueue(2) is checked against the receiver's own limit. With the
#: host's limit (96 362 measured) a STRICT sandbox queued 96 361 real-time signals to a child of its
#: own, and the host user's next sigqueue failed with EAGAIN (BASIC: the same uid; NAMESPACE: the
#: user namespace's creator; CONTAINER: uid 65534, every container sandbox's). A sandbox now adds
#: at most this many to its user's count; no Python program queues more than a few.
SIGNALS_PENDING_MAX = 64


@dataclasses.dataclass(frozen=True, kw_only=True)
class RlimitsSection:
    """The rlimits section: plan key ("AS", "CPU", "NOFILE", "NPROC", "FSIZE", "CORE", "SIGPENDING") -> value.

    ``shared_uid``: the real uid the worker runs as when it has no user
    namespace of its own (its NPROC limit goes on top of the uid's other
    tasks); None when the count is the sandbox's alone (or the uid is root,
    which the kernel never limits).
    """

    enabled: bool = True
    limits: dict[str, int]
    shared_uid: int | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.limits) - set(_NAMES))
        if unknown:
            raise ConfinementError("rlimits", f"unknown limit(s) {unknown}")


def plan_rlimits(
    limits: ResourceLimits,
    *,
    extra_processes: int = 0,
    address_space: int | str | None = "memory",
    shared_uid: int | None = None,
    nproc: bool = True,
    cpu_backstop: bool = False,
) -> RlimitsSection:
    """HOST side: the rlimits section of a child plan.

    ``extra_processes`` is added to ``max_processes`` for helper processes of
    the sandbox (init, proxy relay) that share the worker's uid.
    ``address_space``: RLIMIT_AS; ``"memory"`` (the default) uses the memory
    limit, None sets none (a cgroup or the outside guard enforces memory).
    ``nproc=False`` sets no RLIMIT_NPROC (the cgroup's pids.max holds the sandbox exactly).
    ``cpu_backstop``: the cgroup measures the tree's CPU time and the outside monitor kills at
    the limit, so RLIMIT_CPU is only a backstop half as much again above it (a cgroup counts
    CPU the scheduler ran, without the steal time a virtual machine's tick accounting adds to a
    process's own figure; measured here 0.81-0.91 s in the cgroup when RLIMIT_CPU's 1 s fired,
    so the rlimit struck first and the host could not confirm the limit).
    """
    out: dict[str, int] = {"CORE": 0, "SIGPENDING": SIGNALS_PENDING_MAX}
    as_limit = limits.memory_limit_bytes if address_space == "memory" else address_space
    if isinstance(as_limit, int):
        out["AS"] = int(as_limit)
    if limits.cpu_time_limit_seconds is not None:
        cpu = limits.cpu_time_limit_seconds * (1.5 if cpu_backstop else 1.0)
        out["CPU"] = max(1, int(cpu + 0.999))
    if limits.max_open_files is not None:
        out["NOFILE"] = int(limits.max_open_files)
    if limits.max_processes is not None and nproc:
        out["NPROC"] = int(limits.max_processes) + extra_processes
    if limits.max_file_size_bytes is not None:
        out["FSIZE"] = int(limits.max_file_size_bytes)
    return RlimitsSection(limits=out, shared_uid=shared_uid if "NPROC" in out else None)


def plan_step(ctx: PlanContext) -> RlimitsSection:
    """HOST side: the config's limits; the profile's helper processes (but P0, which runs as
    another uid or in the parent namespace) share the worker's process limit. Without a user
    namespace the worker's real uid is shared with the host's other tasks (``shared_uid``)."""
    shared = None
    if not ctx.profile.user_namespace:
        uid = ctx.profile.uid if ctx.profile.uid is not None else os.getuid()
        shared = uid if uid != 0 else None
    # With the sandbox's own cgroup, pids.max counts exactly its tasks; a shared uid's
    # RLIMIT_NPROC would also count every other sandbox of that uid (containers, QEMU and
    # CHROOT workers all run as 65534), so it is left to the cgroup.
    cgroup_pids = ctx.cgroup is not None and ctx.cgroup.enabled and shared is not None
    return plan_rlimits(
        ctx.config.limits,
        extra_processes=max(0, ctx.profile.helper_processes - 1),
        address_space=_address_space_limit(ctx),
        shared_uid=shared,
        nproc=not cgroup_pids,
        cpu_backstop=ctx.cgroup is not None and ctx.cgroup.enabled,
    )


def _address_space_limit(ctx: PlanContext) -> int | str | None:
    """HOST side: RLIMIT_AS. Memory means resident memory: none where the cgroup enforces it,
    a generous backstop where the outside monitor does (see :mod:`glsandbox_kernel.memory_guard`),
    the limit itself only when nothing outside measures."""
    from ..memory_guard import address_space_backstop

    if ctx.cgroup is not None and ctx.cgroup.enabled:
        return None
    if ctx.config.enable_metrics:
        return address_space_backstop(ctx.config.limits.memory_limit_bytes)
    return "memory"


def _nproc_base_child(section: RlimitsSection) -> int:
    """CHILD side: tasks of ``shared_uid`` besides this (single-threaded) process, right now."""
    if section.shared_uid is None:
        return 0
    others = procfs.tasks_of_uid(section.shared_uid, exclude=os.getpid())
    if others is None:
        raise ConfinementError(
            "rlimits",
            f"count the tasks of uid {section.shared_uid} in /proc (for RLIMIT_NPROC)",
            None,
            "RLIMIT_NPROC counts every task of the uid; without /proc the limit cannot be set for the sandbox alone",
        )
    return others


def apply_rlimits_child(section: RlimitsSection | None, state: ChildState) -> None:
    """CHILD side: lower each limit to the planned value (soft and hard); NOFILE after the hello."""
    if not section or not section.enabled:
        return
    applied: dict[str, int] = {}
    base = _nproc_base_child(section) - state.helpers_absent if "NPROC" in section.limits else 0
    for key, value in section.limits.items():
        if key == "NPROC":
            value += base
        rlim = getattr(resource, _NAMES[key])
        soft, hard = resource.getrlimit(rlim)
        new = value if hard == resource.RLIM_INFINITY else min(value, hard)
        # CPU: the soft limit sends SIGXCPU (a clear reason), the hard one SIGKILL a second later.
        new_hard = new + 1 if key == "CPU" else new
        if hard != resource.RLIM_INFINITY:
            new_hard = min(new_hard, hard)
        limit = (new, new_hard)
        if key == "NOFILE":  # lowered after the hello (see the module docstring)
            state.file_limit, limit = limit, (soft if hard == resource.RLIM_INFINITY else hard, hard)
        try:
            resource.setrlimit(rlim, limit)
        except (ValueError, OSError) as exc:
            raise ConfinementError(
                "rlimits", f"setrlimit({_NAMES[key]}, {limit[0]})", getattr(exc, "errno", None)
            ) from exc
        applied[key] = new
    state.report["rlimits"] = applied
    if section.shared_uid is not None and "NPROC" in applied:
        state.report["process_limit"] = (
            f"RLIMIT_NPROC {applied['NPROC']}: uid {section.shared_uid} is shared, so {base} task(s) it "
            f"had at start + {section.limits['NPROC']} for the sandbox"
        )
