"""NAMESPACE backend: every Linux confinement step around a zygote-forked worker (host side).

The worker is forked from the pre-imported template (:mod:`glsandbox_kernel.zygote`),
so a fresh sandbox does not pay for a fresh interpreter. In the child,
:func:`glsandbox_kernel.confinement.apply_child_plan` puts it in new user,
pid, mount, net, ipc, uts and cgroup namespaces on a tmpfs root with
read-only binds of what Python needs, then rlimits, capabilities dropped,
no_new_privs, Landlock and seccomp.

Around it, on the host side, this backend adds what must be trusted:

- a cgroup (memory limit and peak, OOM detection, pids, cpu, io) made
  before the worker starts and removed after it ends, or rlimits only when
  cgroups cannot be used here (reported in ``describe()`` and the metrics);
- the seccomp supervisor, fed with the listener fd from the worker's hello;
- the network proxy, when the config allows any network: the only way out
  of the sandbox's empty network namespace.

Works as root (the sandbox uid maps to 65534) and as an unprivileged user
(it maps to the user's own uid). The host side is :class:`~.zygote_backend.ZygoteBackend`'s, driven by
:attr:`NamespaceBackend.profile`; the worker handle is
:class:`~.zygote_worker.NamespaceWorker`.
"""

from __future__ import annotations

import sys
from typing import ClassVar

from ..config import IsolationType
from ..confinement.profile import NAMESPACE_HELPER_PROCESSES, SANDBOX_GID, SANDBOX_UID, ConfinementProfile
from .zygote_backend import ZygoteBackend
from .zygote_worker import NamespaceWorker

__all__ = ["HELPER_PROCESSES", "SANDBOX_WORKDIR", "NamespaceBackend", "NamespaceWorker"]

#: The worker's working directory inside the sandbox (on the private scratch tmpfs).
SANDBOX_WORKDIR = "/tmp/work"
HELPER_PROCESSES = NAMESPACE_HELPER_PROCESSES


class NamespaceBackend(ZygoteBackend):
    """Linux namespaces, tmpfs root, cgroups, seccomp supervisor, Landlock, proxy."""

    name: ClassVar[str] = "namespace"
    isolation_type: ClassVar[IsolationType] = IsolationType.NAMESPACE
    strength: ClassVar[int] = 30
    profile: ClassVar[ConfinementProfile] = ConfinementProfile(
        namespaces=("user", "mount", "pid", "net", "ipc", "uts", "cgroup"),
        root="tmpfs",
        uid=SANDBOX_UID,
        gid=SANDBOX_GID,
        cgroup=True,
        network="proxy",
        workdir=SANDBOX_WORKDIR,
        helper_processes=HELPER_PROCESSES,
    )

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Needs Linux and user namespaces (root or unprivileged); cgroups are optional."""
        if not sys.platform.startswith("linux"):
            return False, "needs Linux namespaces"
        from ..confinement import cgroups, landlock, namespaces, seccomp

        ok, why = namespaces.userns_available()
        if not ok:
            return False, f"cannot create user namespaces: {why}"
        parts = ["user/pid/mount/net/ipc/uts/cgroup namespaces, tmpfs root"]
        sc_ok, sc_why = seccomp.supported()
        parts.append(
            "seccomp" + (" + supervisor" if seccomp.notify_supported() else "") if sc_ok else f"no seccomp ({sc_why})"
        )
        abi = landlock.landlock_abi()
        parts.append(f"Landlock ABI {abi}" if abi else "no Landlock")
        cg_ok, cg_why = cgroups.available()
        parts.append(cg_why if cg_ok else f"no cgroups ({cg_why}): rlimits only")
        return True, "; ".join(parts)

    @classmethod
    def unavailable_hint(cls) -> str:
        return (
            "enable user namespaces (sysctl user.max_user_namespaces=15000; on Debian "
            "kernel.unprivileged_userns_clone=1; on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)"
        )
