"""One helper process per host that removes our containers when the host dies (HOST side).

Exit hooks (:mod:`.lifetime`) remove containers on a clean exit or SIGTERM;
after a SIGKILL (or an OOM kill) of the host nothing of ours runs, and the
sandbox would go on with no timeout, monitor or audit until the next
start-up's sweep. :data:`WATCHER` is the outside layer (the inside one is
the bootstrap's watchdog on its host connection): a small Python process,
started on the first container, in its own session, that reads JSON lines
on a pipe whose only write end this process holds:

* ``{"op": "watch", "id": ..., "docker_host": ...}`` right after a create
  (:func:`.launch.launch_worker`, warm pool included);
* ``{"op": "forget", "id": ...}`` once the container was removed.

At EOF (this process gone, however it died) it removes, by id and by
force, every container still held, through the engine that made it
(``DOCKER_HOST`` as it was at the create: Docker or Podman). The same
design as the VM's QEMU watchdog (:mod:`..vm.control`). Writes go to a
non-blocking pipe (what it does not take yet waits in a bounded backlog,
written with the next message): registering never waits on the helper. A forked child
closes its copy of the pipe (:func:`.lifetime._after_fork`), so the
parent's death still reaches the helper as EOF.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any

log = logging.getLogger("glsandbox.container")

#: Registrations kept while the helper does not read (it starts in ~30 ms; each line is ~100 bytes).
BACKLOG_MAX = 1 << 20

#: The helper: collect ids until EOF, then remove what is left, in parallel.
CODE = r"""
import json, os, sys, threading, time
held = {}
for line in sys.stdin:
    try:
        msg = json.loads(line)
        if msg["op"] == "watch":
            held[str(msg["id"])] = str(msg.get("docker_host") or "")
        else:
            held.pop(str(msg["id"]), None)
    except (ValueError, KeyError, TypeError):
        pass
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


class _Watcher:
    """HOST side: the helper's handle; :meth:`watch` and :meth:`forget` never block."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._backlog = bytearray()

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # no terminal signal of the host's group reaches it
        )
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()
        os.set_blocking(self._fd, False)

    def _send(self, msg: dict[str, Any], *, spawn: bool) -> None:
        line = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if not spawn:
                    return
                try:
                    self._spawn()
                except OSError as exc:
                    log.warning("cannot start the container watcher: %s", exc)
                    self._proc = self._fd = None
                    return
                self._backlog.clear()  # lines meant for a helper that is gone
            self._backlog += line
            self._flush_backlog()

    def _flush_backlog(self) -> None:
        """Write what the pipe takes now (lock held); the rest waits for the next message or close."""
        assert self._fd is not None
        try:
            while self._backlog:
                del self._backlog[: os.write(self._fd, self._backlog)]
        except BlockingIOError:  # the helper is still starting, or slow: never wait for it
            if len(self._backlog) > BACKLOG_MAX:
                log.warning(
                    "the container watcher is not reading: %d bytes of registrations dropped", len(self._backlog)
                )
                self._backlog.clear()
        except OSError as exc:  # the helper is gone: the start-up sweep remains
            log.warning("the container watcher is gone: %s", exc)
            self._backlog.clear()

    def watch(self, container_id: str) -> None:
        """Right after a create: remove this container if this process dies first."""
        self._send({"op": "watch", "id": container_id, "docker_host": os.environ.get("DOCKER_HOST", "")}, spawn=True)

    def forget(self, container_id: str) -> None:
        """The container was removed: nothing to do for it any more."""
        self._send({"op": "forget", "id": container_id}, spawn=False)

    @property
    def pid(self) -> int | None:
        """The helper's pid (tests)."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def close(self, timeout: float = 5.0) -> None:
        """At exit, after the exit hooks removed our containers: EOF; the helper removes what is left."""
        with self._lock:
            proc, fd, self._proc, self._fd = self._proc, self._fd, None, None
            if proc is not None and fd is not None and self._backlog:
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, True)
                    os.write(fd, bytes(self._backlog))
            self._backlog.clear()
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the container watcher is still removing containers")
            proc.returncode = 0  # it goes on alone (its own session)

    def after_fork(self) -> None:
        """In a forked child: close our copy of the parent's pipe (the parent's EOF must still come)."""
        self._lock = threading.Lock()
        self._backlog = bytearray()
        proc, self._proc, self._fd = self._proc, None, None
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            proc.returncode = 0  # not our child: never wait for it


WATCHER = _Watcher()
