"""One helper process that cleans up after this host process when it dies (HOST side).

Exit hooks run on a clean exit or SIGTERM; after a SIGKILL (or an OOM kill)
of the host nothing of ours runs. A :class:`HostWatch` is the layer that
still acts then: a small Python process, started on the first
registration, in its own session, that reads JSON lines on a pipe whose
only write end this process holds: ``{"op": "watch", <key>: ..., ...}``
when something is made, ``{"op": "forget", <key>: ...}`` once it was
released. At EOF (this process gone, however it died) the helper tears
down what is still held. Two kinds use it: the container watcher
(:mod:`.container.watcher`: remove the containers) and the QEMU watchdog
(:mod:`.vm.control`: kill the QEMUs, remove their run directories and
cgroups).

Writes go to a non-blocking pipe (what it does not take yet waits in a
bounded backlog, written with the next message): registering never waits
on the helper. A forked child closes its copy of the pipe (an at-fork
hook), so the parent's death still reaches the helper as EOF.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import weakref
from typing import Any

log = logging.getLogger("glsandbox.host_watch")

#: Registrations kept while the helper does not read (it starts in ~30 ms; each line is ~100 bytes).
BACKLOG_MAX = 1 << 20

#: The helper's first part: ``collect(key, on_watch, on_forget)`` reads until EOF (the host
#: gone) and returns what is still held, ``{msg[key]: on_watch(msg)}``; each kind's code follows.
COLLECT = r"""
import json, sys
def collect(key, on_watch, on_forget):
    held = {}
    for line in sys.stdin:
        try:
            msg = json.loads(line)
            if msg["op"] == "watch":
                held[msg[key]] = on_watch(msg)
            elif msg[key] in held:
                on_forget(held.pop(msg[key]))
        except (ValueError, KeyError, TypeError, OSError):
            pass
    return held
"""

_instances: weakref.WeakSet[HostWatch] = weakref.WeakSet()


class HostWatch:
    """HOST side: one helper's handle; :meth:`register` and :meth:`unregister` never block.

    ``code`` is the helper's own part, run after :data:`COLLECT`; ``name``
    names it in log lines.
    """

    def __init__(self, name: str, code: str) -> None:
        self.name = name
        self.code = COLLECT + code
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._backlog = bytearray()
        _instances.add(self)

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", self.code],
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
                    log.warning("cannot start the %s: %s", self.name, exc)
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
                log.warning("the %s is not reading: %d bytes of registrations dropped", self.name, len(self._backlog))
                self._backlog.clear()
        except OSError as exc:  # the helper is gone: what else cleans up (a start-up sweep) remains
            log.warning("the %s is gone: %s", self.name, exc)
            self._backlog.clear()

    def register(self, msg: dict[str, Any]) -> None:
        """Something was made: the helper tears it down if this process dies first (starts the helper)."""
        self._send({"op": "watch", **msg}, spawn=True)

    def unregister(self, msg: dict[str, Any]) -> None:
        """It was released: nothing to do for it any more (no helper, nothing to tell)."""
        self._send({"op": "forget", **msg}, spawn=False)

    def alive(self) -> bool:
        """Whether the helper runs (it holds what was registered with it)."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The helper's pid (tests)."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def close(self, timeout: float = 5.0) -> None:
        """At exit, after the exit hooks released what they could: EOF; the helper tears down the rest.

        Waits up to ``timeout`` for it; a helper still at work goes on alone
        (its own session), so what it holds is torn down all the same.
        """
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
            log.warning("the %s is still at work after %g s: it finishes alone", self.name, timeout)
            proc.returncode = 0  # never wait for it again

    def after_fork(self) -> None:
        """In a forked child: close our copy of the parent's pipe (the parent's EOF must still come)."""
        self._lock = threading.Lock()
        self._backlog = bytearray()
        proc, self._proc, self._fd = self._proc, None, None
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            proc.returncode = 0  # not our child: never wait for it


def _after_fork() -> None:
    for watch in list(_instances):
        watch.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
