"""Step: resource limits with ``setrlimit(2)``.

Host side: :func:`plan_rlimits` turns :class:`ResourceLimits` into a
:class:`RlimitsSection`. Child side: :func:`apply_rlimits_child` sets them in the worker before
any untrusted code runs. Limits only ever go down (a hard limit the host
already has is never raised).
"""

from __future__ import annotations

import dataclasses
import resource

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
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RlimitsSection:
    """The rlimits section: plan key ("AS", "CPU", "NOFILE", "NPROC", "FSIZE", "CORE") -> value."""

    enabled: bool = True
    limits: dict[str, int]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.limits) - set(_NAMES))
        if unknown:
            raise ConfinementError("rlimits", f"unknown limit(s) {unknown}")


def plan_rlimits(limits: ResourceLimits, *, extra_processes: int = 0) -> RlimitsSection:
    """HOST side: the rlimits section of a child plan.

    ``extra_processes`` is added to ``max_processes`` for helper processes of
    the sandbox (init, proxy relay) that share the worker's uid.
    """
    out: dict[str, int] = {"CORE": 0}
    if limits.memory_limit_bytes is not None:
        out["AS"] = int(limits.memory_limit_bytes)
    if limits.cpu_time_limit_seconds is not None:
        out["CPU"] = max(1, int(limits.cpu_time_limit_seconds + 0.999))
    if limits.max_open_files is not None:
        out["NOFILE"] = int(limits.max_open_files)
    if limits.max_processes is not None:
        out["NPROC"] = int(limits.max_processes) + extra_processes
    if limits.max_file_size_bytes is not None:
        out["FSIZE"] = int(limits.max_file_size_bytes)
    return RlimitsSection(limits=out)


def plan_step(ctx: PlanContext) -> RlimitsSection:
    """HOST side: the config's limits; the profile's helper processes (but P0, which runs as
    another uid or in the parent namespace) share the worker's process limit."""
    return plan_rlimits(ctx.config.limits, extra_processes=max(0, ctx.profile.helper_processes - 1))


def apply_rlimits_child(section: RlimitsSection | None, state: ChildState) -> None:
    """CHILD side: lower each limit to the planned value (soft and hard)."""
    if not section or not section.enabled:
        return
    applied: dict[str, int] = {}
    for key, value in section.limits.items():
        rlim = getattr(resource, _NAMES[key])
        _soft, hard = resource.getrlimit(rlim)
        new = value if hard == resource.RLIM_INFINITY else min(value, hard)
        # CPU: the soft limit sends SIGXCPU (a clear reason), the hard one SIGKILL a second later.
        new_hard = new + 1 if key == "CPU" else new
        if hard != resource.RLIM_INFINITY:
            new_hard = min(new_hard, hard)
        try:
            resource.setrlimit(rlim, (new, new_hard))
        except (ValueError, OSError) as exc:
            raise ConfinementError("rlimits", f"setrlimit({_NAMES[key]}, {new})", getattr(exc, "errno", None)) from exc
        applied[key] = new
    state.report["rlimits"] = applied
