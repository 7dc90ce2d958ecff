"""Shared low-level helpers of the confinement steps: errors, fd hygiene.

Constants, ``libc()`` and ``prctl()`` live in :mod:`glsandbox_kernel.linux`.

Who calls: the step modules of :mod:`glsandbox_kernel.confinement`, on both
sides of the trust boundary. Nothing here allocates much or starts threads,
so the child-side helpers are safe to call after ``fork()``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfinementError

if TYPE_CHECKING:
    from ..config import OSSandboxConfig
    from .cgroups.section import CgroupSection
    from .profile import ConfinementProfile


def check(step: str, call: str, result: int, hint: str = "") -> int:
    """Raise :class:`ConfinementError` with the current errno when ``result < 0``."""
    if result < 0:
        raise ConfinementError(step, call, ctypes.get_errno(), hint)
    return result


def close_fds_except(keep: set[int]) -> None:
    """Close every fd >= 3 that is not in ``keep`` (child side, after fork)."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


@dataclasses.dataclass
class PlanContext:
    """HOST side: what every step's ``plan_step(ctx)`` may read while the plan is built.

    ``workdir``: the worker's working directory (a host directory without a
    root of its own; the path inside the sandbox otherwise). ``cgroup``: the
    section of the cgroup the host made, or None. ``proxy_socket``: the host
    path of the network proxy's socket, or None. ``sections``: the sections
    planned so far, by step name. ``report``: the host's own fallbacks.
    ``project``: what is shown of the project folder (computed on first use).
    """

    config: OSSandboxConfig
    profile: ConfinementProfile
    workdir: str
    cgroup: CgroupSection | None = None
    proxy_socket: str | None = None
    sections: dict[str, Any] = dataclasses.field(default_factory=dict)
    report: dict[str, str] = dataclasses.field(default_factory=dict)
    #: the project folder and the user's paths (:func:`glsandbox_kernel.project.layout_for`), once.
    project: Any = None


@dataclasses.dataclass
class ChildState:
    """CHILD side: what the steps hand on to later steps while the plan is applied.

    ``report``: what was applied and what fell back (untrusted once it
    reaches the host). ``sources``: the mount step's O_PATH fds. ``relay``:
    the network relay's listening socket. ``pass_fds``: fds the worker
    sends to the host with its hello (the seccomp listener).
    ``intermediate``: set while this process is a set-up process (P1)
    that must never return from the plan. ``helpers_absent``: helper
    processes the plan's process limit allowed for that do not count
    against the worker's uid here (no P1 below a cloned init; the init
    itself when it kept another uid). ``file_limit``: the (soft, hard)
    RLIMIT_NOFILE the worker sets once its hello is sent (see :mod:`.rlimits`).
    """

    report: dict[str, Any]
    sources: dict[str, int] = dataclasses.field(default_factory=dict)
    relay: socket.socket | None = None
    pass_fds: list[int] = dataclasses.field(default_factory=list)
    intermediate: bool = False
    helpers_absent: int = 0
    file_limit: tuple[int, int] | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    """One confinement step: ``plan`` (HOST side, -> a frozen section or None) and
    ``apply`` (CHILD side, ``apply(section, state)``; returns at once when the section is None
    or disabled). A step done in two halves appears twice in ``STEPS`` with the same
    ``name``; its section is planned once (the second entry's ``plan`` is None)."""

    name: str
    plan: Callable[[PlanContext], Any] | None
    apply: Callable[[Any, ChildState], None]


def lower_file_limit(limit: tuple[int, int] | None) -> None:
    """CHILD side: set RLIMIT_NOFILE to ``limit`` (None: nothing deferred), once the hello's fds are sent.

    The worker calls it right after its hello, and every process forked
    before that (the network relay), so none runs untrusted code with the higher limit.
    """
    if limit is None:
        return
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, limit)
    except (ValueError, OSError) as exc:
        raise ConfinementError("rlimits", f"setrlimit(RLIMIT_NOFILE, {limit[0]})", getattr(exc, "errno", None)) from exc
