"""HOST side, as root: the folders a level lets the sandbox write that it cannot, as notices.

As root the sandbox never writes as root: NAMESPACE and CHROOT run it as the folder's non-root
owner, else uid 65534 (a root-owned writable folder is not written: an idmapped mount would let it
make root-owned setuid files); CONTAINER and GVISOR run it as uid 65534. So a LENIENT project (or a
``--rw`` folder) owned by root, or, for a container, by anyone but uid 65534, is writable in name
only: every write fails with EACCES. Before, nothing said so (the new-user walkthrough of 2026-12-04:
``glsandbox run`` at ``level: lenient`` in ``/root/emissions``, ``PermissionError`` on the first
``open(..., "w")``). BASIC keeps the host's uid; the VM's writes are its own.
"""

from __future__ import annotations

import os
import stat

from .config import OSSandboxConfig
from .project import NOBODY_ID

_OWNER_OR_NOBODY = ("namespace", "chroot")  # the folder's non-root owner, else uid 65534
_NOBODY = ("container", "gvisor")  # always uid 65534


def unwritable_folders(config: OSSandboxConfig, isolation: str) -> list[str]:
    """Notices for the folders ``config`` lets a sandbox of ``isolation`` write that it cannot write."""
    if os.geteuid() != 0 or isolation not in _OWNER_OR_NOBODY + _NOBODY:
        return []
    fs = config.filesystem
    folders = [fs.project_dir] if fs.project_dir and config.project_access == "write" else []
    notices = []
    for folder in [*folders, *fs.writable_paths]:
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        uid = NOBODY_ID if isolation in _NOBODY or st.st_uid == 0 else st.st_uid
        if _may_write(st, uid):
            continue
        owner = "root" if st.st_uid == 0 else f"uid {st.st_uid}"
        fix = (
            f"chown -R {NOBODY_ID}: {folder}, or use isolation namespace, which writes as the folder's owner"
            if isolation in _NOBODY
            else f"chown -R USER: {folder} to the analyst's user (the sandbox then writes as that user)"
        )
        notices.append(
            f"{folder} is owned by {owner} (mode {stat.S_IMODE(st.st_mode):o}) and the sandbox writes as uid {uid} "
            f"here ({isolation}; never as root), so the sandbox cannot write it (Permission denied); fix: {fix}"
        )
    return notices


def _may_write(st: os.stat_result, uid: int) -> bool:
    """Whether ``uid`` (group ``uid`` too: the sandbox's gid follows its uid) may create files in the folder."""
    if st.st_uid == uid:
        return st.st_mode & 0o300 == 0o300
    if st.st_gid == uid:
        return st.st_mode & 0o030 == 0o030
    return st.st_mode & 0o003 == 0o003
