"""The container sweep's judgement of a container's creator (``backends/container/owner.py``, host side).

:func:`owner.stale` on the labels a host writes (:func:`owner.labels`),
with real processes of this machine standing for the creator: a live
child, a zombie (exited, not reaped), a reaped one; and the labels another
user, another boot, another machine or an older version would write.
No engine is needed: the rule is a function of the labels and of /proc.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from glsandbox_kernel import procfs
from glsandbox_kernel.backends.container import owner
from glsandbox_kernel.backends.container.settings import host_labels


def _made_by(pid: int, **extra: str) -> dict[str, str]:
    """This host's labels with the creator ``pid`` (its start time as now), overridden by ``extra``."""
    return {**owner.labels(), owner.LABEL_HOST_PID: str(pid), owner.LABEL_HOST_START: owner.start_ticks(pid), **extra}


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_the_labels_name_this_host_and_hide_the_machine_id() -> None:
    labels = host_labels("s", "container")
    assert labels[owner.LABEL_HOST_PID] == str(os.getpid())
    assert labels[owner.LABEL_HOST_UID] == str(os.getuid())
    with open(owner.BOOT_ID_PATH) as fh:
        assert labels[owner.LABEL_HOST_BOOT] == fh.read().strip()
    machine_ids = [m for m in (owner._first_line(p) for p in owner.MACHINE_ID_PATHS) if m]
    assert bool(labels[owner.LABEL_HOST_MACHINE]) == bool(machine_ids)
    assert not any(m in value for m in machine_ids for value in labels.values())
    assert owner.host_filter() == [f"{k}={v}" for k, v in owner.labels().items()]
    assert not owner.stale(labels), "this live host's own container"


def test_a_live_creator_is_alive_and_a_reused_pid_is_not(child: subprocess.Popen[bytes]) -> None:
    assert not owner.stale(_made_by(child.pid))
    start = int(owner.start_ticks(child.pid))
    assert owner.stale(_made_by(child.pid, **{owner.LABEL_HOST_START: str(start + 1)})), "another process has its pid"
    assert not owner.stale(_made_by(child.pid, **{owner.LABEL_HOST_START: ""})), "no start time: alive"


def test_a_zombie_creator_counts_as_alive_a_reaped_one_as_gone() -> None:
    proc = subprocess.Popen(["true"])
    labels = _made_by(proc.pid)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    stat = procfs.stat(proc.pid)
    assert stat is not None and not stat.alive
    assert not owner.stale(labels)
    proc.wait()
    assert owner.stale(labels)


def test_what_cannot_be_judged_here_is_never_stale(child: subprocess.Popen[bytes]) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = _made_by(proc.pid, **{owner.LABEL_HOST_START: "12345"})
    assert owner.stale(dead)
    other_boot = str(uuid.uuid4())
    never = {
        "another user": {owner.LABEL_HOST_UID: str(os.getuid() + 1)},
        "another user, another boot": {owner.LABEL_HOST_UID: str(os.getuid() + 1), owner.LABEL_HOST_BOOT: other_boot},
        "another pid namespace": {owner.LABEL_HOST_PIDNS: "pid:[1]"},
        "another machine": {owner.LABEL_HOST_BOOT: other_boot, owner.LABEL_HOST_MACHINE: uuid.uuid4().hex},
        "no machine id, another boot": {owner.LABEL_HOST_BOOT: other_boot, owner.LABEL_HOST_MACHINE: ""},
        "a pid that is no number": {owner.LABEL_HOST_PID: "x1"},
        "a negative pid": {owner.LABEL_HOST_PID: "-1"},
        "a pid namespace that is no link": {owner.LABEL_HOST_PIDNS: "4026531836"},
    }
    for why, extra in never.items():
        assert not owner.stale({**dead, **extra}), why
    for key in (owner.LABEL_HOST_UID, owner.LABEL_HOST_BOOT, owner.LABEL_HOST_MACHINE, owner.LABEL_HOST_PIDNS):
        older = {k: v for k, v in dead.items() if k != key}
        assert not owner.stale(older), f"without {key} (an older version's or another tool's)"


def test_another_boot_of_this_machine_is_gone_whatever_its_pid(child: subprocess.Popen[bytes]) -> None:
    labels = _made_by(child.pid, **{owner.LABEL_HOST_BOOT: str(uuid.uuid4())})
    if not owner.machine():
        pytest.skip("no /etc/machine-id here: no other boot is judged ours")
    assert owner.stale(labels), "the pid and start time of another boot name nothing here"
