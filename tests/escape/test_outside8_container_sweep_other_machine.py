"""Outside review (9th): the container sweep removes another machine's live sandbox containers.

Attack (no malice needed): two machines use one Docker engine (``DOCKER_HOST``
= ``tcp://`` or ``ssh://`` to a shared build host, which glsandbox honours),
or two users share one machine whose ``/proc`` is mounted ``hidepid=2``.
:func:`glsandbox_kernel.backends.container.lifetime.sweep_stale` (run in the
background at the first container start of every host) judges a container
"ours" when its ``glsandbox.host_pidns`` label equals this process's pid
namespace link, and "stale" when no process here has the labelled pid and
start time. The init pid namespace is ``pid:[4026531836]`` on EVERY Linux
machine (``PROC_PID_INIT_INO``), so another machine's container passes as
ours, and its host (a pid that does not exist here, or a start time that
differs) passes as dead: the sweep force-removes a sandbox another machine
is running, mid-cell. Under ``hidepid=2`` another user's live host is
invisible in ``/proc``, the same way. (The new host-death watcher's label
filter, ``watcher.py`` ``labelled()``, has the same weakness: pid, start
ticks and pid namespace only.)

Measured here: a created container carrying exactly the labels another
machine's host writes (same pidns link, pid 4194000 not running here) was
removed by one ``sweep_stale()`` call.

Judged from the host: a container whose labels do not name this machine
(e.g. its ``/proc/sys/kernel/random/boot_id``) survives the sweep: one an
older version wrote (no boot or machine label, as measured above), and one
this version wrote on another machine (another boot id and machine digest).

Fixed: the creator's labels name its boot, machine and user
(``backends/container/owner.py``), and the sweep touches only this user's
containers of this machine (``owner.stale``).
"""

from __future__ import annotations

import os
import uuid

import pytest

from glsandbox_kernel import procfs
from glsandbox_kernel.backends.container import docker_api, lifetime, owner
from glsandbox_kernel.backends.container.settings import (
    LABEL,
    LABEL_BACKEND,
    LABEL_HOST_PID,
    LABEL_HOST_PIDNS,
    LABEL_HOST_START,
    LABEL_SESSION,
)
from glsandbox_kernel.backends.registry import backends

pytestmark = pytest.mark.timeout(120)


def absent_pid() -> int:
    """A pid no process here has (the highest free one below 4194000)."""
    for pid in range(4194000, 4100000, -1):
        try:
            open(f"/proc/{pid}/stat").close()
        except OSError:
            return pid
    raise AssertionError("no free pid")


#: What another machine's host writes besides the labels above, by version: none (older
#: ones), or its own boot id and machine digest (this one; the same user id as ours).
OTHER_MACHINE = {
    "older version": {},
    "this version": {
        owner.LABEL_HOST_BOOT: str(uuid.uuid4()),
        owner.LABEL_HOST_MACHINE: uuid.uuid4().hex,
        owner.LABEL_HOST_UID: str(os.getuid()),
    },
}


@pytest.mark.parametrize("version", OTHER_MACHINE)
def test_the_sweep_keeps_a_container_another_machine_is_running(version: str) -> None:
    ok, why = backends()["container"].available()
    if not ok:
        pytest.skip(f"container: {why}")
    client = docker_api.api()
    image = next((t for i in client.images() for t in (i.get("RepoTags") or []) if t.startswith("glsandbox")), None)
    if image is None:
        pytest.skip("no glsandbox image")
    labels = {  # what settings.host_labels writes on another machine sharing this engine
        LABEL: "1",
        LABEL_SESSION: uuid.uuid4().hex,
        LABEL_HOST_PID: str(absent_pid()),
        LABEL_HOST_START: "123456",
        LABEL_HOST_PIDNS: procfs.ns_link("self", "pid") or "",
        LABEL_BACKEND: "container",
        **OTHER_MACHINE[version],
    }
    made = client.create_container(image, command=["true"], labels=labels, name=f"a9-other-{uuid.uuid4().hex[:8]}")
    cid = made["Id"]
    try:
        removed = lifetime.sweep_stale()
        still = [c["Id"] for c in client.containers(all=True, filters={"id": cid})]
    finally:
        docker_api.remove_now(cid)
    assert still, (
        f"sweep_stale() removed a container whose labels are another machine's live host "
        f"(removed {len(removed)}: {[r[:12] for r in removed]})"
    )
