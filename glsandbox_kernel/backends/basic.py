"""BASIC backend: a forked worker with rlimits, scrubbed env, private cwd (host side).

The worker is forked from the zygote (:mod:`glsandbox_kernel.zygote`) and
confined by the child-side steps its profile asks for (rlimits,
capabilities, no_new_privs, umask 077, and where the kernel has them
Landlock and seccomp). Needs no root.

Network: BASIC has no network namespace, so it enforces exactly one network
policy, none: seccomp denies IPv4/IPv6/packet sockets and Landlock (ABI 4+)
denies TCP bind/connect. A config that allows any network is refused (see
:meth:`~.zygote_backend.ZygoteBackend.check_config`).
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
    """Process isolation with rlimits; works everywhere on POSIX without root."""

    name: ClassVar[str] = "basic"
    isolation_type: ClassVar[IsolationType] = IsolationType.BASIC
    strength: ClassVar[int] = 10
    #: The host's filesystem narrowed by Landlock, a private host working directory,
    #: no namespaces: the network can only be denied.
    profile: ClassVar[ConfinementProfile] = ConfinementProfile()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if os.name != "posix":
            return False, "needs a POSIX system"
        return True, "forked worker with rlimits, scrubbed environment, private working directory"
