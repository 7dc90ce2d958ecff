"""A sandbox's private host working folder, sized to the disk quota where the host can (HOST side).

Backends without a mount namespace (BASIC) give the worker a private folder
on the host (``mkdtemp``), its only writable place besides the output
folder. As root, :func:`make_scratch` mounts a tmpfs of exactly
``disk_quota_bytes`` on it, so the kernel refuses writes past the quota
(ENOSPC) however many files they are spread over; :func:`remove_scratch`
unmounts and removes it. Without CAP_SYS_ADMIN nothing can size the folder:
:func:`make_scratch` says so, and the plan report records "disk quota: per
file only". A host process killed with SIGKILL cannot unmount: the next
:func:`make_scratch` of this uid sweeps mounts whose creator is gone (the
creator's pid is in the folder name).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile

from ..linux import libc

_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8
_PREFIX = "glsandbox-q"
_NAME = re.compile(rf"^{_PREFIX}(\d+)-")


def make_scratch(session_id: str, quota: int | None) -> tuple[str, bool]:
    """HOST side: a private folder for ``session_id``; ``(path, sized)``, sized True when the quota holds."""
    if quota is None or os.geteuid() != 0:
        return tempfile.mkdtemp(prefix=f"glsandbox-{session_id[:8]}-"), False
    _sweep()
    path = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-{session_id[:8]}-")
    opts = f"size={max(quota, 4096)},mode=0700,nr_inodes=65536".encode()
    if libc().mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts) != 0:
        return path, False  # e.g. no CAP_SYS_ADMIN in this user namespace: a plain folder
    return path, True


def remove_scratch(path: str) -> None:
    """HOST side (janitor thread): unmount a sized folder, then remove it.

    Only a real folder owned by this uid is unmounted, never through a
    symlink (``UMOUNT_NOFOLLOW``): a name planted in the shared temporary
    folder cannot make root unmount something else.
    """
    if os.path.basename(path).startswith(_PREFIX):
        try:
            st = os.lstat(path)
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return
        libc().umount2(path.encode(), _MNT_DETACH | _UMOUNT_NOFOLLOW)
    shutil.rmtree(path, ignore_errors=True)


def _sweep() -> None:
    """HOST side: unmount and remove sized folders of host processes that are gone."""
    base = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            m = _NAME.match(name)
            if m is None or _alive(int(m.group(1))):
                continue
            remove_scratch(os.path.join(base, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["make_scratch", "remove_scratch"]
