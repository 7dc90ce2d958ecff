"""A sandbox's private host working folder, sized to the disk quota where the host can (HOST side).

Backends without a mount namespace (BASIC) give the worker a private folder
on the host (``mkdtemp``), its only writable place besides the output
folder. As root, :func:`make_scratch` mounts a tmpfs of exactly
``disk_quota_bytes`` on it, so the kernel refuses writes past the quota
(ENOSPC) however many files they are spread over; :func:`remove_scratch`
unmounts and removes it. Without CAP_SYS_ADMIN nothing can size the folder:
:func:`make_scratch` says so, and the host's disk guard (:mod:`..disk_guard`)
counts it with the output folder, killing the sandbox past the quota. A host process killed with SIGKILL cannot unmount: the first
private folder a later host process makes sweeps those whose creator is
gone (``hosttemp.py``; the creator's pid is in the folder name).
"""

from __future__ import annotations

import os

from .. import hosttemp
from ..linux import libc

_MS_NOSUID, _MS_NODEV = 2, 4


def make_scratch(session_id: str, quota: int | None) -> tuple[str, bool]:
    """HOST side: a private folder for ``session_id``; ``(path, sized)``, sized True when the quota holds."""
    if quota is None or os.geteuid() != 0:
        return hosttemp.private_dir("w", session_id[:8] + "-"), False
    path = hosttemp.private_dir("q", session_id[:8] + "-")
    opts = f"size={max(quota, 4096)},mode=0700,nr_inodes=65536".encode()
    if libc().mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts) != 0:
        return path, False  # e.g. no CAP_SYS_ADMIN in this user namespace: a plain folder
    return path, True


def remove_scratch(path: str) -> None:
    """HOST side (janitor thread): unmount a sized folder, then remove it (see :func:`hosttemp.remove`)."""
    hosttemp.remove(path)


__all__ = ["make_scratch", "remove_scratch"]
