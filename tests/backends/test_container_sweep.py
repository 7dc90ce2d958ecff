"""The start-up sweep and the host-death watcher touch only this machine's and user's containers (host side).

Real containers, created (never started) on Docker and on Podman
(``GLSANDBOX_PODMAN_HOST``, else ``.cache/podman.sock``; skipped with the
reason when no Podman service answers), carrying the labels a host writes
(:func:`settings.host_labels`) with the creator changed: a dead creator of
this machine and boot, a host of an earlier boot of this machine, another
user's, an older version's (no boot or machine label). Judged from the
engine's own listing after one :func:`lifetime.sweep_stale`; then a real
host process that registered its labels with the watcher is SIGKILLed, and
only the container with exactly its labels goes.

Containers other test runs sharing the engine make are never touched by
these sweeps: only containers with this user's boot and machine labels are
judged, and their hosts are alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from glsandbox_kernel.backends.container import docker_api, lifetime, owner
from glsandbox_kernel.backends.container.settings import host_labels
from glsandbox_kernel.backends.registry import backends

from ..conftest import wait_gone
from ..escape.test_outside8_container_sweep_other_machine import absent_pid  # pid 4194000 or below, free here

pytestmark = [pytest.mark.container, pytest.mark.timeout(180)]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Engine:
    """The engine under test: its API, an image, and every container made here (removed at the end)."""

    def __init__(self, name: str, api: Any, image: str) -> None:
        self.name, self.api, self.image = name, api, image
        self.made: list[str] = []

    def create(self, labels: dict[str, str]) -> str:
        cid = str(
            self.api.create_container(
                self.image, command=["true"], labels=labels, name=f"sweep-{uuid.uuid4().hex[:10]}"
            )["Id"]
        )
        self.made.append(cid)
        return cid

    def exists(self, cid: str) -> bool:
        return bool(self.api.containers(all=True, filters={"id": cid}))


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    if request.param == "podman":
        host = os.environ.get("GLSANDBOX_PODMAN_HOST") or f"unix://{REPO}/.cache/podman.sock"
        if not os.path.exists(host.removeprefix("unix://")):
            pytest.skip(f"no Podman service at {host} (scripts/podman-up)")
        monkeypatch.setenv("DOCKER_HOST", host)
    docker_api.forget_client()  # the shared client follows DOCKER_HOST
    try:
        ok, why = backends()["container"].available()
        if not ok:
            pytest.skip(f"{request.param}: {why}")
        api = docker_api.api()
        tags = [t for i in api.images() for t in (i.get("RepoTags") or [])]
        image = next((t for t in tags if "glsandbox" in t), None)
        if image is None:
            pytest.skip(f"{request.param}: no glsandbox image (scripts/build-images)")
        found = Engine(request.param, api, image)
        yield found
        for cid in found.made:
            docker_api.remove_now(cid)
    finally:
        docker_api.forget_client()


def _labels(**changed: str) -> dict[str, str]:
    return {**host_labels(uuid.uuid4().hex, "container"), **changed}


def test_a_dead_creator_of_this_machine_is_swept_a_live_one_kept(engine: Engine) -> None:
    dead = engine.create(_labels(**{owner.LABEL_HOST_PID: str(absent_pid())}))
    live = engine.create(_labels())  # this test process: alive
    removed = lifetime.sweep_stale()
    assert dead in removed and not engine.exists(dead), f"{engine.name}: a dead creator's container was kept"
    assert live not in removed and engine.exists(live), f"{engine.name}: a live creator's container was removed"


def test_a_host_of_an_earlier_boot_of_this_machine_is_swept(engine: Engine) -> None:
    if not owner.machine():
        pytest.skip("no /etc/machine-id here: no other boot is judged ours")
    # pid and start time of this live process: only the boot says the creator is gone
    earlier = engine.create(_labels(**{owner.LABEL_HOST_BOOT: str(uuid.uuid4())}))
    assert earlier in lifetime.sweep_stale() and not engine.exists(earlier)


def test_another_users_and_an_older_versions_containers_are_kept(engine: Engine) -> None:
    # Another user (hidepid hides its host): by every other label a gone creator of this
    # machine (an earlier boot); its pid namespace is not ours, so no older sweep removes it.
    other_user = engine.create(
        _labels(
            **{
                owner.LABEL_HOST_UID: str(os.getuid() + 1),
                owner.LABEL_HOST_BOOT: str(uuid.uuid4()),
                owner.LABEL_HOST_PIDNS: "pid:[1]",
            }
        )
    )
    # An older version's (or another machine's older version's): no boot, machine or user
    # label, a pid no process here has, our pid namespace (the one every machine's init has).
    older = {
        k: v
        for k, v in _labels(**{owner.LABEL_HOST_PID: str(absent_pid())}).items()
        if k not in (owner.LABEL_HOST_BOOT, owner.LABEL_HOST_MACHINE, owner.LABEL_HOST_UID)
    }
    old = engine.create(older)
    removed = lifetime.sweep_stale()
    assert other_user not in removed and engine.exists(other_user), f"{engine.name}: another user's container removed"
    assert old not in removed and engine.exists(old), f"{engine.name}: an older version's container removed"


#: A host that registered its labels with the watcher (as before every create), then waits to be killed.
EXPECTING_HOST = r"""
import json
from glsandbox_kernel.backends.container import owner
from glsandbox_kernel.backends.container.watcher import WATCHER
WATCHER.expect()
print("READY", WATCHER.pid, json.dumps(owner.labels()), flush=True)
import time
time.sleep(120)
"""


def test_the_watcher_removes_only_its_hosts_containers(engine: Engine) -> None:
    env = dict(os.environ, PYTHONPATH=REPO)
    host = subprocess.Popen([sys.executable, "-c", EXPECTING_HOST], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert host.stdout is not None
        word, watcher, labels = [*host.stdout.readline().split(" ", 2), "", "", ""][:3]
        assert word == "READY", "the host did not start"
        its = json.loads(labels)
        mine = engine.create(its)
        # Another machine's host with the same pid, start time and pid namespace (identical
        # boots of cloned machines): only the boot and machine labels differ.
        twin = engine.create({**its, owner.LABEL_HOST_BOOT: str(uuid.uuid4()), owner.LABEL_HOST_MACHINE: "0" * 32})
        other_user = engine.create({**its, owner.LABEL_HOST_UID: str(os.getuid() + 1)})
        host.send_signal(signal.SIGKILL)
        host.wait()
        assert not wait_gone([int(watcher)], 60.0), "the watcher outlived its host by 60 s"
        assert not engine.exists(mine), f"{engine.name}: the watcher left its host's container"
        assert engine.exists(twin) and engine.exists(other_user), f"{engine.name}: the watcher removed another's"
    finally:
        with contextlib.suppress(ProcessLookupError):
            host.kill()
        host.wait()
        assert host.stdout is not None
        host.stdout.close()
