"""Cgroups of earlier versions (``glsandbox-<name>-h<pid>``) are swept: empty ones whose pid is dead here.

``confinement/cgroups/sweep.py``: today's names carry the creator's pid, start
time and pid namespace; the names of versions before that carry the pid only,
so their namespace is unknowable. Such a cgroup is removed only when its pid
names no process here and it is empty (plain rmdir, nothing killed); one still
holding a process, one with a child cgroup, one whose pid lives, and every name
not exactly of the old form are left alone. Real cgroups (root), in a private
parent cgroup so no other host's cgroups are touched.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from glsandbox_kernel.confinement.cgroups import sweep


def _hierarchy() -> str | None:
    """A cgroup directory where this process (root) may make children: v1 pids, else the v2 root."""
    with open("/proc/self/mounts") as fh:
        mounts = [line.split() for line in fh]
    for _src, point, fstype, opts, *_ in mounts:
        if fstype == "cgroup" and "pids" in opts.split(","):
            return point
    for _src, point, fstype, *_ in mounts:
        if fstype == "cgroup2":
            return point
    return None


@pytest.fixture
def parent() -> Iterator[str]:
    hierarchy = _hierarchy()
    if os.geteuid() != 0 or hierarchy is None:
        pytest.skip("needs root and a cgroup hierarchy")
    path = os.path.join(hierarchy, f"glsandbox-test-sweep-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        for root, dirs, _files in os.walk(path, topdown=False):
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(root, d))
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    return proc.pid


def test_empty_cgroups_of_old_names_whose_pid_is_dead_are_removed_and_nothing_else(parent: str) -> None:
    dead = _dead_pid()
    names = {
        "empty": f"glsandbox-0123456789ab-c0ffee-h{dead}",  # a session's, as earlier versions named it
        "vm": f"glsandbox-vm-0123456789ab-h{dead}",
        "busy": f"glsandbox-busy01234567-h{dead}",  # still holds a process: never killed, kept
        "nested": f"glsandbox-nested012345-h{dead}",  # holds a child cgroup: kept
        "alive": f"glsandbox-alive0123456-h{os.getpid()}",  # its pid lives here: kept
        "suffix": f"glsandbox-abc-h{dead}x",  # not the old form exactly: kept
        "prefix": f"xglsandbox-abc-h{dead}",
        "spaced": f"glsandbox-a b-h{dead}",
        "nameless": f"glsandbox--h{dead}",
    }
    for name in names.values():
        os.mkdir(os.path.join(parent, name))
    os.mkdir(os.path.join(parent, names["nested"], "child"))
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(parent, names["busy"], "cgroup.procs"), "w") as fh:
            fh.write(str(sleeper.pid))
        removed = sweep.sweep([parent])
        assert sleeper.poll() is None, "a process in an old name's cgroup was killed"
        left = {n for n in os.listdir(parent) if os.path.isdir(os.path.join(parent, n))}
    finally:
        sleeper.kill()
        sleeper.wait()
    expected = {os.path.join(parent, names[k]) for k in ("empty", "vm")}
    assert set(removed) == expected
    assert left == {n for k, n in names.items() if k not in ("empty", "vm")}
