"""One helper process per host that removes our containers when the host dies (HOST side).

Exit hooks (:mod:`.lifetime`) remove containers on a clean exit or SIGTERM;
after a SIGKILL (or an OOM kill) of the host nothing of ours runs, and the
sandbox would go on with no timeout, monitor or audit until the next
start-up's sweep. :data:`WATCHER` is the outside layer (the inside one is
the bootstrap's watchdog on its host connection), a
:class:`..host_watch.HostWatch` (the same helper as the VM's QEMU watchdog,
:mod:`..vm.control`):

* :meth:`~_Watcher.expect` right before a create: at EOF the helper also
  removes every container labelled with exactly this host process (pid,
  start time, pid namespace, boot, machine and user: :func:`.owner.host_filter`,
  never another machine's on a shared engine), so one whose create this host
  never saw return (killed during it, or before :meth:`watch`) goes too, started
  or not; taken back (:meth:`~_Watcher.unexpect`) by a clean shutdown, which
  removed its containers itself;
* :meth:`~_Watcher.watch` right after a create
  (:func:`.launch.launch_worker`, warm pool included);
* :meth:`~_Watcher.forget` once the container was removed.

At EOF (this process gone, however it died) the helper removes, by id and
by force, every container still held, and those its labels name (listed
again a second later, for a create the engine finished after the host died),
through the engine that made them (``DOCKER_HOST`` as it was at the create:
Docker or Podman).
"""

from __future__ import annotations

import os

from ..host_watch import HostWatch
from . import owner

#: The helper's part after ``collect``: remove what is left (held ids, then what the labels name), in parallel.
CODE = r"""
import os, threading, time
held = collect("id", lambda msg: (str(msg.get("docker_host") or ""), msg.get("labels")), lambda kept: None)
if not held:
    sys.exit(0)
import docker
clients = {}
for host in {host for host, _labels in held.values()}:
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    if host:
        env["DOCKER_HOST"] = host
    try:
        clients[host] = docker.from_env(environment=env, timeout=30).api
    except Exception:
        pass
def remove(cid, api):
    for attempt in range(4):
        try:
            api.remove_container(cid, force=True, v=True)
            return
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (404, 409) or attempt == 3:
                return
            time.sleep(0.2 * (attempt + 1))
def labelled():
    found = set()
    for host, labels in held.values():
        if labels and host in clients:
            try:
                found |= {(c["Id"], host) for c in clients[host].containers(all=True, filters={"label": labels})}
            except Exception:
                pass
    return found
def remove_all(targets):
    threads = [threading.Thread(target=remove, args=(cid, clients[host])) for cid, host in targets if host in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
done = {(cid, host) for cid, (host, labels) in held.items() if not labels} | labelled()
remove_all(done)
if any(labels for _host, labels in held.values()):
    time.sleep(1.0)
    remove_all(labelled() - done)
"""


class _Watcher(HostWatch):
    """HOST side: the container watcher's handle; :meth:`watch` and :meth:`forget` never block."""

    def __init__(self, name: str, code: str) -> None:
        super().__init__(name, code)
        self._expected: dict[str, int | None] = {}  # label entry -> the helper that holds it

    def expect(self) -> None:
        """Right before a create: remove every container labelled with this host if it dies first."""
        docker_host = os.environ.get("DOCKER_HOST", "")
        key = f"labels:{docker_host}"
        if self._expected.get(key) == self.pid and self.alive():
            return
        self.register({"id": key, "docker_host": docker_host, "labels": owner.host_filter()})
        self._expected[key] = self.pid

    def unexpect(self) -> None:
        """A clean shutdown removed this host's containers: no listing by label at its EOF."""
        for key in list(self._expected):
            self.unregister({"id": key})
        self._expected.clear()

    def after_fork(self) -> None:
        """In a forked child: another host (another pid), which expects nothing yet."""
        super().after_fork()
        self._expected = {}

    def watch(self, container_id: str) -> None:
        """Right after a create: remove this container if this process dies first."""
        self.register({"id": container_id, "docker_host": os.environ.get("DOCKER_HOST", "")})

    def forget(self, container_id: str) -> None:
        """The container was removed: nothing to do for it any more."""
        self.unregister({"id": container_id})


WATCHER = _Watcher("container watcher", CODE)
