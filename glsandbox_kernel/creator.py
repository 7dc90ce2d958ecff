"""The host process that made a cgroup or private folder, written in its name (HOST side).

A name carries ``<pid>.<start time>.<pid namespace>`` (:func:`token`): the
start time is ``/proc/self/stat`` field 22 (clock ticks since boot), the pid
namespace is the inode of ``/proc/self/ns/pid``. The sweeps of what killed
hosts left behind (:mod:`glsandbox_kernel.confinement.cgroups.sweep`,
:mod:`glsandbox_kernel.hosttemp`) ask :func:`gone` about a name's token:

- a token of **another pid namespace** is never gone: its pid means nothing
  here (a host in a container sharing the cgroup hierarchy, a
  ``unshare -p``/bubblewrap session sharing ``/tmp``); what such a host leaves
  is for the hosts of its own namespace to sweep;
- in our namespace, gone when no process has the pid *or* the process that
  has it started at another time (a reused pid does not keep a dead host's
  leftovers);
- names without a token (pid only, from versions before this one) do not
  match :data:`PATTERN`: their namespace is unknowable, so nothing in them is
  ever killed; :func:`old_gone` says when such a pid names no process here
  (the cgroup sweep then removes an *empty* one: rmdir, never a kill).

When ``/proc`` is not of our pid namespace (``unshare -p`` without a new
``/proc``) no pid can be checked, so nothing is gone.
"""

from __future__ import annotations

import os

from . import procfs

#: a token in a name: groups pid, start time, pid-namespace inode
PATTERN = r"(\d+)\.(\d+)\.(\d+)"
_cache: tuple[int, str] | None = None


def _own_ns() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _proc_is_ours() -> bool:
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def token() -> str:
    """``<pid>.<start time>.<pid namespace inode>`` of this process (0 for what cannot be read)."""
    global _cache
    pid = os.getpid()
    if _cache is None or _cache[0] != pid:  # a forked child is another creator
        start = procfs.start_time(pid) if _proc_is_ours() else None
        _cache = (pid, f"{pid}.{start or 0}.{_own_ns() or 0}")
    return _cache[1]


def gone(pid: str, start: str, ns: str) -> bool:
    """Whether the creator named by a token's groups (:data:`PATTERN`) is known to be gone."""
    if int(ns) == 0 or int(ns) != _own_ns() or not _proc_is_ours():
        return False
    if _no_process(int(pid)):
        return True
    now = procfs.start_time(int(pid))  # None: a zombie, or unreadable (hidepid): keep
    return now is not None and int(start) != 0 and now != int(start)


def old_gone(pid: str) -> bool:
    """Whether the pid of an old, pid-only name (no start time, no namespace) names no process here.

    Never proof that its creator is gone (it may live in another pid namespace):
    callers only remove what holds nothing (an empty cgroup), never kill."""
    return int(pid) > 0 and _proc_is_ours() and _no_process(int(pid))


def _no_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False
