"""One helper process per host that removes our containers when the host dies (HOST side).

Exit hooks (:mod:`.lifetime`) remove containers on a clean exit or SIGTERM;
after a SIGKILL (or an OOM kill) of the host nothing of ours runs, and the
sandbox would go on with no timeout, monitor or audit until the next
start-up's sweep. :data:`WATCHER` is the outside layer (the inside one is
the bootstrap's watchdog on its host connection), a
:class:`..host_watch.HostWatch` (the same helper as the VM's QEMU watchdog,
:mod:`..vm.control`):

* :meth:`~_Watcher.watch` right after a create
  (:func:`.launch.launch_worker`, warm pool included);
* :meth:`~_Watcher.forget` once the container was removed.

At EOF (this process gone, however it died) the helper removes, by id and
by force, every container still held, through the engine that made it
(``DOCKER_HOST`` as it was at the create: Docker or Podman).
"""

from __future__ import annotations

import os

from ..host_watch import HostWatch

#: The helper's part after ``collect``: remove what is left, in parallel.
CODE = r"""
import os, threading, time
held = collect("id", lambda msg: str(msg.get("docker_host") or ""), lambda host: None)
if not held:
    sys.exit(0)
import docker
clients = {}
for host in set(held.values()):
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
threads = [
    threading.Thread(target=remove, args=(cid, clients[host]))
    for cid, host in held.items() if host in clients
]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
"""


class _Watcher(HostWatch):
    """HOST side: the container watcher's handle; :meth:`watch` and :meth:`forget` never block."""

    def watch(self, container_id: str) -> None:
        """Right after a create: remove this container if this process dies first."""
        self.register({"id": container_id, "docker_host": os.environ.get("DOCKER_HOST", "")})

    def forget(self, container_id: str) -> None:
        """The container was removed: nothing to do for it any more."""
        self.unregister({"id": container_id})


WATCHER = _Watcher("container watcher", CODE)
