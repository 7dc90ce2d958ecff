"""CHROOT backend: pivot into a given root filesystem as an unprivileged uid (host side).

Weaker than NAMESPACE, and documented so: there is no user namespace, so
the worker is a real host uid (65534) and the set-up runs as real root; the
root filesystem is whatever ``FilesystemConfig.root`` holds. What it keeps:
new mount, pid, net, ipc, uts and cgroup namespaces, ``pivot_root`` into the
given root (mounted read-only, plus a private /tmp and working directory on
tmpfs, a fresh /proc and a minimal /dev), capabilities dropped,
no_new_privs, rlimits, Landlock, seccomp with the supervisor, and cgroups.

The interpreter's directories and ``readonly_paths``/``writable_paths`` are
bound from the host only where the root has a directory to mount them on
(``mkdir -p ROOT/<path>``): the root itself is never modified.

Needs root. Its ``strength`` is below BASIC's on purpose: it is used only
when asked for, since it needs a root filesystem the default config lacks.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import ClassVar

from ..config import IsolationType
from ..confinement.profile import UNPRIVILEGED_HOST_ID, ConfinementProfile
from .namespace import NamespaceBackend
from .zygote_backend import ZygoteBackend


class ChrootBackend(ZygoteBackend):
    """pivot_root into ``FilesystemConfig.root``, unprivileged uid, no user namespace."""

    name: ClassVar[str] = "chroot"
    isolation_type: ClassVar[IsolationType] = IsolationType.CHROOT
    strength: ClassVar[int] = 5
    #: NAMESPACE's profile without a user namespace: the set-up runs as real root, the
    #: worker as host uid 65534 with supplementary groups cleared, never dumpable, in
    #: the given root instead of a tmpfs.
    profile: ClassVar[ConfinementProfile] = dataclasses.replace(
        NamespaceBackend.profile,
        namespaces=("mount", "pid", "net", "ipc", "uts", "cgroup"),
        root="given",
        uid=UNPRIVILEGED_HOST_ID,
        gid=UNPRIVILEGED_HOST_ID,
        setgroups=True,
        dumpable="never",
    )

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not sys.platform.startswith("linux"):
            return False, "needs Linux (mount and pid namespaces, pivot_root)"
        if os.geteuid() != 0:
            return False, "needs root (it pivots into the root filesystem, then drops to uid 65534)"
        return True, "pivot_root into FilesystemConfig.root as uid 65534, capabilities dropped (weaker than namespace)"

    @classmethod
    def unavailable_hint(cls) -> str:
        return "run as root, or use isolation 'namespace', which works without root"
