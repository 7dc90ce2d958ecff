"""What a backend asks of the confinement steps: one typed, frozen profile (HOST side).

Each zygote backend declares a :class:`ConfinementProfile` as a class
attribute; :func:`~glsandbox_kernel.confinement.build_child_plan` and the
host-side set-up read only the profile, so no confinement code ever asks
which backend it serves. A third-party backend may declare its own.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..linux import CLONE_NS_FLAGS

#: uid/gid of the worker inside its user namespace.
SANDBOX_UID = 1000
SANDBOX_GID = 1000
#: Host uid/gid the sandbox uid maps to when the host process is root (and CHROOT's worker uid).
UNPRIVILEGED_HOST_ID = 65534
#: Processes of a namespaced sandbox besides the worker and its children
#: (P0, P1, the init P2 and the proxy relay): added to pids.max.
NAMESPACE_HELPER_PROCESSES = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConfinementProfile:
    """How a zygote backend confines its worker.

    ``namespaces``: the kinds to unshare (empty: none, the worker shares the
    host's). ``root``: ``"host"`` (no mount namespace step: the host's
    filesystem, narrowed by Landlock), ``"tmpfs"`` (a fresh tmpfs root with
    read-only binds of what Python needs) or ``"given"``
    (``FilesystemConfig.root``, mounted read-only). ``uid``/``gid``: the ids
    the worker switches to (as seen inside its user namespace when there is
    one); None keeps the host process's. ``setgroups``: clear supplementary
    groups. ``dumpable``: ``"unless_root"`` keeps the worker dumpable only
    for an unprivileged host (the supervisor reads its memory without
    CAP_SYS_PTRACE), ``"never"`` hides it. ``cgroup``: the host makes a
    cgroup per sandbox (falls back to rlimits where it cannot).
    ``network``: ``"proxy"`` (an empty network namespace, allowed traffic
    through the host's proxy) or ``"deny_only"`` (no network namespace: the
    only network policy this backend can enforce is none, by seccomp and
    Landlock; any other is refused). ``workdir``: the worker's working
    directory inside the sandbox, or None for a private host directory.
    ``helper_processes``: processes of the sandbox besides the worker and
    its children (added to the process limits).
    """

    namespaces: tuple[str, ...] = ()
    root: Literal["host", "tmpfs", "given"] = "host"
    uid: int | None = None
    gid: int | None = None
    setgroups: bool = False
    dumpable: Literal["unless_root", "never"] = "unless_root"
    cgroup: bool = False
    network: Literal["proxy", "deny_only"] = "deny_only"
    workdir: str | None = None
    helper_processes: int = 0

    def __post_init__(self) -> None:
        unknown = [k for k in self.namespaces if k not in CLONE_NS_FLAGS]
        if unknown:
            raise ValueError(f"unknown namespace kind(s) {unknown}")
        if self.root != "host" and "mount" not in self.namespaces:
            raise ValueError("a tmpfs or given root needs a mount namespace")
        if self.network == "proxy" and "net" not in self.namespaces:
            raise ValueError("network='proxy' needs a network namespace")
        if self.root != "host" and self.workdir is None:
            raise ValueError("a sandbox with its own root needs a workdir inside it")

    @property
    def user_namespace(self) -> bool:
        return "user" in self.namespaces

    @property
    def namespaced(self) -> bool:
        return bool(self.namespaces)
