"""Private host folders in the shared temporary folder, named by their creator (HOST side).

Backends, the network proxy and ``glsandbox run`` keep sockets, a BASIC
worker's files and the audit key file in folders under ``$TMPDIR``. Each is
made by :func:`private_dir` as ``glsandbox-<kind><creator token>-…`` (mode
0700; the token is pid, start time and pid namespace,
:mod:`glsandbox_kernel.creator`): a host killed with SIGKILL cannot remove
its own, so the first :func:`private_dir` of every later host process sweeps
the folders whose creator is gone (:func:`glsandbox_kernel.creator.gone`:
folders of another pid namespace sharing ``$TMPDIR`` are left to its hosts).
The sweep removes only real folders owned by this uid (never through a
planted symlink); ``shutil.rmtree`` does not follow links
inside them either. :func:`remove` also unmounts a sized scratch folder
(kind ``q``, see ``backends/scratch.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import threading

from . import creator
from .linux import libc

KINDS = ("q", "w", "net", "ctr", "run", "nb")
_NAME = re.compile(r"^glsandbox-(" + "|".join(KINDS) + ")" + creator.PATTERN + "-")
_MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8
_swept = False
_sweep_lock = threading.Lock()


def private_dir(kind: str, tag: str = "") -> str:
    """HOST side: a new 0700 folder of ``kind`` for this process, after sweeping dead creators' once."""
    if kind not in KINDS:
        raise ValueError(f"unknown private folder kind {kind!r}")
    sweep_once()
    return tempfile.mkdtemp(prefix=f"glsandbox-{kind}{creator.token()}-{tag}")


def remove(path: str) -> None:
    """HOST side: unmount (kind ``q``) and remove a folder made by :func:`private_dir`.

    Only a real folder owned by this uid is touched, and a mount is detached
    with ``UMOUNT_NOFOLLOW``: a name planted in the shared temporary folder
    cannot make root unmount or remove something else.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return
    m = _NAME.match(os.path.basename(path))
    if m is not None and m.group(1) == "q":
        libc().umount2(path.encode(), _MNT_DETACH | _UMOUNT_NOFOLLOW)
    shutil.rmtree(path, ignore_errors=True)


def sweep() -> int:
    """HOST side: remove the private folders of host processes that are gone; how many."""
    base = tempfile.gettempdir()
    removed = 0
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            m = _NAME.match(name)
            if m is None or not creator.gone(*m.groups()[1:]):
                continue
            path = os.path.join(base, name)
            remove(path)
            removed += not os.path.lexists(path)
    return removed


def sweep_once() -> None:
    """HOST side: :func:`sweep` on the first call in this process only."""
    global _swept
    with _sweep_lock:
        if _swept:
            return
        _swept = True
    sweep()


__all__ = ["KINDS", "private_dir", "remove", "sweep", "sweep_once"]
