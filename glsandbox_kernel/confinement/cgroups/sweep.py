"""Cgroups a killed host process left behind: swept by the next one that makes a cgroup (HOST side).

An owned cgroup's directory names its creator
(``glsandbox-<name>-h<pid>.<start time>.<pid namespace>``, :func:`~.base.dir_name`,
:mod:`glsandbox_kernel.creator`). The janitor removes it after the worker; a host
killed with SIGKILL cannot. Its workers die with it (the template's
``PR_SET_PDEATHSIG``), so what it leaves is an empty directory per
hierarchy, or, should a process of the sandbox have outlived it, one still
holding it. The first :func:`~glsandbox_kernel.confinement.cgroups.create_cgroup`
of every later host process kills what is left in the cgroups of creators
that are gone and removes them, as :mod:`glsandbox_kernel.hosttemp` does for
private folders (:func:`glsandbox_kernel.creator.gone`: only names of its own
pid namespace; another namespace's hosts sweep their own). Only directories this process could make (its own
cgroup's children, so root or the delegated owner) are looked at.

Names of earlier versions (``glsandbox-<name>-h<pid>``, no start time nor
namespace: :data:`_OLD_NAME`, exactly the form they made) are removed only when
their pid names no process here (:func:`glsandbox_kernel.creator.old_gone`) and
they are empty (no process, no child cgroup): a plain ``rmdir``, which the kernel
refuses for a cgroup in use; nothing in them is killed (their host may be alive in
another pid namespace).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterable

from ... import creator
from .base import read_text

_NAME = re.compile(r"^glsandbox-.+-h" + creator.PATTERN + "$")
#: what earlier versions named a cgroup: ``glsandbox-<name>-h<pid>`` (``<name>``: a session id's
#: first 12 characters and 6 hex digits, ``vm-`` and 12 hex digits, or 12 hex digits)
_OLD_NAME = re.compile(r"^glsandbox-[A-Za-z0-9_.-]+-h(\d+)$")
_swept = False
_lock = threading.Lock()


def _remove(path: str, timeout: float = 1.0) -> bool:
    """Kill what is in the cgroup at ``path`` and remove it; True once it is gone."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in (read_text(path + "/cgroup.procs") or "").split():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)


def sweep(parents: Iterable[str]) -> list[str]:
    """HOST side: remove the cgroups below ``parents`` whose creator is gone; the paths removed."""
    removed = []
    for parent in sorted(set(parents)):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            path = os.path.join(parent, name)
            old = _OLD_NAME.match(name)
            if old is not None:
                if creator.old_gone(old.group(1)) and _remove_if_empty(path):
                    removed.append(path)
                continue
            m = _NAME.match(name)
            if m is None or not creator.gone(*m.groups()) or not os.path.isdir(path):
                continue
            if _remove(path):
                removed.append(path)
    return removed


def _remove_if_empty(path: str) -> bool:
    """``rmdir`` a cgroup of an old name when it holds no process; never kills (True once removed).

    The kernel refuses (EBUSY) a cgroup with a process or a child cgroup; the look at
    ``cgroup.procs`` first also spares a directory that is no cgroup at all."""
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    procs = read_text(path + "/cgroup.procs")
    if procs is None or procs.strip():
        return False
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def sweep_once(parents: Iterable[str]) -> None:
    """HOST side: :func:`sweep` on the first call in this process only."""
    global _swept
    with _lock:
        if _swept:
            return
        _swept = True
    sweep(parents)


__all__ = ["sweep", "sweep_once"]
