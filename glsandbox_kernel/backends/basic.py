"""BASIC backend: a forked worker with rlimits, scrubbed env, private cwd (host side).

The worker is forked from the zygote (:mod:`glsandbox_kernel.zygote`) and
confined by the child-side steps its profile asks for (rlimits,
capabilities, no_new_privs, umask 077, and where the kernel has them
Landlock and seccomp). Needs no root.

Network: BASIC has no network namespace, so it enforces exactly one network
policy, none: seccomp denies IPv4/IPv6/packet sockets and Landlock (ABI 4+)
denies TCP bind/connect. A config that allows any network is refused (see
:meth:`~.zygote_backend.ZygoteBackend.check_config`).

Processes and memory: where the host can make a cgroup (root, or a
delegated subtree), the sandbox gets its own, as NAMESPACE does: the host
moves the worker into it before any untrusted code runs, ``pids.max`` holds
the tree to ``max_processes`` tasks in the kernel (at fork, so no burst
passes), the memory controller holds ``memory_limit_bytes`` and
``cpu_percent_limit`` is a CPU quota. The cgroup is removed after the
worker (the janitor); one a killed host left is swept by the next host
process that makes one (:mod:`~glsandbox_kernel.confinement.cgroups.sweep`).
Where no cgroup can be made (unprivileged, no delegation) it is
``RLIMIT_NPROC``, which the kernel counts per real uid: the worker keeps the
host's uid, so the limit is set that many tasks above what the uid already
runs (:mod:`~glsandbox_kernel.confinement.rlimits`); memory is held by the
outside monitor (:mod:`~glsandbox_kernel.memory_guard`), and
``cpu_percent_limit`` is refused. A root host without a cgroup (a
read-only cgroup filesystem, e.g. in a container) is held to
``max_processes`` only by the session's outside task guard, which samples:
the kernel never applies RLIMIT_NPROC to uid 0.
"""

from __future__ import annotations

import os
from typing import ClassVar

from ..config import IsolationType
from ..confinement.process import scrubbed_env
from ..confinement.profile import ConfinementProfile
from .zygote_backend import ZygoteBackend, ZygoteWorker, flush_cleanups

__all__ = ["BasicBackend", "ZygoteWorker", "flush_cleanups", "scrubbed_env"]


class BasicBackend(ZygoteBackend):
    """Process isolation with rlimits, and a cgroup where the host can make one; works everywhere
    on POSIX without root."""

    name: ClassVar[str] = "basic"
    isolation_type: ClassVar[IsolationType] = IsolationType.BASIC
    strength: ClassVar[int] = 10
    #: The host's filesystem narrowed by Landlock, a private host working directory,
    #: no namespaces (the network can only be denied), a cgroup where one can be made.
    profile: ClassVar[ConfinementProfile] = ConfinementProfile(cgroup=True)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if os.name != "posix":
            return False, "needs a POSIX system"
        from ..confinement import cgroups

        ok, why = cgroups.available()
        limits = why if ok else f"no cgroups ({why}): rlimits only"
        return True, f"forked worker, scrubbed environment, private working directory; {limits}"
