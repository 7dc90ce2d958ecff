"""Step: resource limits with ``setrlimit(2)``.

Host side: :func:`plan_rlimits` turns :class:`ResourceLimits` into a plain
dict. Child side: :func:`apply_rlimits_child` sets them in the worker before
any untrusted code runs. Limits only ever go down (a hard limit the host
already has is never raised).
"""

from __future__ import annotations

import resource
from typing import Any

from ..config import ResourceLimits
from ._common import ConfinementError

#: Plan key -> ``resource`` constant name.
_NAMES = {
    "AS": "RLIMIT_AS",
    "CPU": "RLIMIT_CPU",
    "NOFILE": "RLIMIT_NOFILE",
    "NPROC": "RLIMIT_NPROC",
    "FSIZE": "RLIMIT_FSIZE",
    "CORE": "RLIMIT_CORE",
}


def plan_rlimits(
    limits: ResourceLimits, *, extra_processes: int = 0, address_space: int | str | None = "memory"
) -> dict[str, Any]:
    """HOST side: the rlimits section of a child plan.

    ``extra_processes`` is added to ``max_processes`` for helper processes of
    the sandbox (init, proxy relay) that share the worker's uid.
    ``address_space``: RLIMIT_AS; ``"memory"`` (the default) uses the memory
    limit, None sets none (a cgroup or the outside guard enforces memory).
    """
    out: dict[str, int] = {"CORE": 0}
    as_limit = limits.memory_limit_bytes if address_space == "memory" else address_space
    if isinstance(as_limit, int):
        out["AS"] = int(as_limit)
    if limits.cpu_time_limit_seconds is not None:
        out["CPU"] = max(1, int(limits.cpu_time_limit_seconds + 0.999))
    if limits.max_open_files is not None:
        out["NOFILE"] = int(limits.max_open_files)
    if limits.max_processes is not None:
        out["NPROC"] = int(limits.max_processes) + extra_processes
    if limits.max_file_size_bytes is not None:
        out["FSIZE"] = int(limits.max_file_size_bytes)
    return {"enabled": True, "limits": out}


def apply_rlimits_child(section: dict[str, Any] | None, report: dict[str, Any]) -> None:
    """CHILD side: lower each limit to the planned value (soft and hard)."""
    if not section or not section.get("enabled"):
        return
    applied: dict[str, int] = {}
    for key, value in section["limits"].items():
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
    report["rlimits"] = applied
