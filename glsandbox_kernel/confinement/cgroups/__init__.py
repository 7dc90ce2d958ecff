"""Step: cgroups (memory, pids, cpu, io) behind one interface, v1 and v2.

One interface, :class:`~.base.Cgroup`, with a v1 and a v2 implementation
chosen by detection (as gVisor's ``runsc/cgroup`` does), and two
constructors (gVisor's ``NewFromPath``/``NewFromPid``):

- :func:`create_cgroup` (HOST side) creates one cgroup per sandbox under the
  host process's own cgroup (so outer limits still apply); it is *owned*:
  readings, limits, attach, rename, kill and remove.
  Its directory names the host process; the first create of a later host
  process removes those whose creator was killed (:mod:`.sweep`).
- :func:`from_pid` (HOST side) finds the cgroup of a process we did not
  place (a container's, made by its runtime): read-only, ``sample()``,
  ``reset_peak()``, ``procs()``, ``close()``.

:func:`available` says whether we can make cgroups here and why not;
:func:`cpu_quota_unavailable` whether one made here could hold a CPU quota.

Attaching, two ways (the plan's ``attach_by``):

- ``"child"``: :func:`attach_child` writes the calling process's pid into
  the cgroup's ``cgroup.procs`` files, first thing in the child, so every
  process it starts is charged.
- ``"host"`` (the NAMESPACE backend): :meth:`Cgroup.attach` moves the
  sandbox's processes from the host while they set up, and once more after
  the worker's hello, before any untrusted code runs. Every migration first
  waits for an RCU grace period (about 15 ms on a small VM, migrations soon
  after do not); done this way the wait overlaps with the set-up instead of
  delaying it.
"""

from __future__ import annotations

import functools
import os
import uuid

from ... import procfs
from ...config import ResourceLimits
from .._common import ChildState, ConfinementError, PlanContext
from .base import CG_ROOT, Cgroup, CgroupSection, join_mount, write
from .sweep import sweep_once
from .v1 import CgroupV1
from .v2 import CgroupV2

__all__ = [
    "Cgroup",
    "CgroupSection",
    "CgroupV1",
    "CgroupV2",
    "attach_child",
    "available",
    "cpu_quota_unavailable",
    "create_cgroup",
    "from_pid",
]


def _implementations() -> list[type[Cgroup]]:
    """Detection order: pure v2 first, then v1, then a hybrid's v2 with controllers."""
    mounts = {m.mount_point: m.fstype for m in procfs.mountinfo()}
    if mounts.get(CG_ROOT) == "cgroup2":
        return [CgroupV2]
    return [CgroupV1, CgroupV2]


@functools.cache
def _chosen() -> tuple[type[Cgroup] | None, str]:
    """The implementation sandboxes' cgroups are made with here (None: none), and why."""
    reasons = []
    for impl in _implementations():
        ok, why = impl.detect()
        if ok:
            return impl, why
        reasons.append(why)
    return None, "; ".join(reasons)


def available() -> tuple[bool, str]:
    """HOST side: whether cgroups can be used for sandboxes here, and why (not).

    Probed once per process (it sits on every sandbox start); a later
    failure to create a cgroup still falls back to rlimits with its reason.
    """
    impl, why = _chosen()
    return impl is not None, why


def cpu_quota_unavailable() -> str:
    """HOST side: why a sandbox cgroup made here could not hold ``cpu_percent_limit`` ("" if it could):
    no cgroups at all, or no cpu controller (v1: not mounted; v2: not enabled for our cgroup)."""
    impl, why = _chosen()
    return why if impl is None else impl.cpu_quota_missing()


def create_cgroup(limits: ResourceLimits, *, name: str | None = None, extra_processes: int = 0) -> Cgroup:
    """HOST side: create the sandbox's cgroup with ``limits`` (v2 or v1 by detection).

    ``extra_processes`` is added to ``pids.max`` for the sandbox's helper
    processes. Raises :class:`ConfinementError` when no implementation works.
    """
    name = name or uuid.uuid4().hex[:12]
    reasons = []
    for impl in _implementations():
        ok, why = impl.detect()
        if ok:
            sweep_once(impl.parent_dirs())
            mgr = impl(name)
            mgr.create(limits, extra_processes=extra_processes)
            return mgr
        reasons.append(why)
    raise ConfinementError("cgroups", "create", None, "; ".join(reasons))


def from_pid(pid: int) -> Cgroup | None:
    """HOST side: a read-only view of ``pid``'s cgroup (v1 or v2, from /proc/PID/cgroup), or None.

    For cgroups the project does not own (a container's): ``sample()``,
    ``reset_peak()``, ``procs()``, ``close()``; creating, attaching, killing
    and removing are refused. ``oom_killed`` counts every OOM kill in it.
    """
    entries = procfs.cgroup_entries(pid)
    if entries is None:
        return None
    v1_dirs: dict[str, str] = {}
    v2_path: str | None = None
    mounts = procfs.mountinfo()
    v2_mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    for _hid, controllers, path in entries:
        if not controllers and v2_mount is not None:
            v2_path = join_mount(v2_mount.mount_point, v2_mount.root, path)
        for ctl in controllers.split(","):
            for m in mounts:
                if m.fstype == "cgroup" and ctl in m.super_options.split(",") and ctl not in v1_dirs:
                    if ctl in CgroupV1.REQUIRED + CgroupV1.OPTIONAL:
                        v1_dirs[ctl] = join_mount(m.mount_point, m.root, path)
    name = os.path.basename(v2_path or v1_dirs.get("memory", "")) or str(pid)
    if "memory" in v1_dirs and os.path.isdir(v1_dirs["memory"]):
        return CgroupV1(name, dirs=v1_dirs, owned=False)
    if v2_path and os.path.exists(os.path.join(v2_path, "memory.current")):
        return CgroupV2(name, path=v2_path, owned=False)
    return None


def plan_step(ctx: PlanContext) -> CgroupSection | None:
    """HOST side: the section of the cgroup the host made (``ctx.cgroup``), or a report of why none."""
    if ctx.cgroup is None:
        ctx.report["cgroups"] = "not used: rlimits only"
        return None
    if not ctx.cgroup.enabled:
        ctx.report["cgroups"] = ctx.cgroup.unavailable or "unavailable"
    return ctx.cgroup


def attach_child(section: CgroupSection | None, state: ChildState) -> None:
    """CHILD side: move this process into the sandbox cgroup (every hierarchy).

    A disabled section only copies the host's reason into the report.
    """
    if not section:
        return
    report = state.report
    if not section.enabled:
        if section.unavailable:
            report["cgroups"] = section.unavailable
        return
    if section.attach_by == "host":
        report["cgroups"] = {"version": section.version, "name": section.name, "attached_by": "host"}
        return
    pid = str(os.getpid())
    for path in section.procs:
        try:
            write(path, pid)
        except OSError as exc:
            raise ConfinementError("cgroups", f"write {path}", exc.errno) from exc
    report["cgroups"] = {"version": section.version, "name": section.name}
