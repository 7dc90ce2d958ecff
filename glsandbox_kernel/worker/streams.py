"""The worker's frame connection and its output streams (SANDBOX side, used by ``worker/loop.py``).

:class:`Connection` is the worker's end of the frame channel (thread-safe
sends); :class:`StreamWriter` replaces ``sys.stdout``/``sys.stderr`` and
sends ``stream`` frames in short batches; :class:`FdForwarder` forwards what
subprocesses write to fds 1 and 2 and flushes the writers while a long cell runs.
"""

from __future__ import annotations

import _signal
import _thread
import errno
import io
import os
import select
import signal
import socket
import time
from typing import Any

from ..exceptions import ConfinementError
from ..protocol import FrameChannel
from .common import INTERRUPT_SIGNALS


class Connection:
    """The worker's end of the frame channel, safe to send from several threads."""

    def __init__(self, sock: socket.socket) -> None:
        self.chan = FrameChannel(sock, max_frame=1 << 30)
        self.chan.before_large_frame = _import_numpy
        self.chan.mirror_fast = True  # replies as MessagePack once the host sent such a request
        self.chan.from_host = True  # the host's requests: decoded without the host's walk of hostile frames
        self.lock = _thread.allocate_lock()  # threading's Lock; threading itself is not imported

    def send(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.chan.send(msg)

    def recv(self) -> dict[str, Any]:
        msg = self.chan.recv()
        assert msg is not None
        return msg


def _import_numpy(size: int) -> None:
    """SANDBOX side, before a large request takes its memory: import numpy if it is installed.

    A large request is almost always array data, and numpy's import maps some
    80 MB (OpenBLAS's buffers; OpenBLAS exits with status 1 when it cannot).
    Imported first, a request that does not fit fails cleanly (FrameTooLarge).
    """
    try:
        import numpy  # noqa: F401
    except (ImportError, MemoryError):
        pass


class StreamWriter(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` replacement: sends ``stream`` frames.

    Buffers briefly (50 ms / 8 KiB) so a print loop does not cost a frame per
    line; :func:`flush_streams` empties every buffer at the end of a request.
    """

    def __init__(self, conn: Connection, name: str) -> None:
        super().__init__()
        self.conn = conn
        self.name = name
        self._parts: list[str] = []
        self._size = 0
        self._last = 0.0
        self.other: StreamWriter | None = None
        self._lock = _thread.allocate_lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        other = self.other
        if other is not None and other._parts:
            other.flush()  # keep stdout/stderr interleaving in order
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            due = self._size > 8192
        if due:
            self.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if not self._parts:
                return
            text = "".join(self._parts)
            self._parts.clear()
            self._size = 0
            self._last = time.monotonic()
        self.conn.send({"type": "stream", "name": self.name, "text": text})


class FdForwarder:
    """Forwards what subprocesses write to fds 1 and 2 as stream frames.

    Also flushes the Python-level stream buffers every 100 ms, so output
    appears while a long cell runs. Its thread is a bare ``_thread`` one
    (daemon-like, not in :func:`threading.enumerate`): ``threading.Thread``'s
    machinery, run for the first time in each worker, wrote some of the
    template's pages that every idle worker otherwise shares.
    """

    def __init__(self, conn: Connection, writers: dict[str, StreamWriter]) -> None:
        self.conn = conn
        self.writers = writers
        self.pipes: dict[int, str] = {}
        self._saved: dict[int, int] = {}
        for fd, name in ((1, "stdout"), (2, "stderr")):
            r, w = os.pipe()
            self._saved[fd] = os.dup(fd)
            os.dup2(w, fd)
            os.close(w)
            os.set_blocking(r, False)
            self.pipes[r] = name
        #: one poll(0) after each request says whether anything is waiting (usually nothing)
        self._ready = select.poll()
        for r in self.pipes:
            self._ready.register(r, select.POLLIN)

    def launch(self) -> None:
        """Start the thread; if it cannot start, put fds 1 and 2 back and raise ConfinementError.

        Called by :func:`serve` before the hello, so a worker that cannot run its own
        machinery (no task left under RLIMIT_NPROC: EAGAIN) fails in set-up, with a message
        that still reaches stderr and the host.
        """
        try:
            _thread.start_new_thread(self.run, ())
        except (RuntimeError, OSError) as exc:
            for fd, saved in self._saved.items():
                os.dup2(saved, fd)
            for fd in (*self._saved.values(), *self.pipes):
                os.close(fd)
            self._saved, self.pipes = {}, {}
            raise ConfinementError(
                "worker",
                "clone(CLONE_THREAD) for the fd forwarder thread",
                getattr(exc, "errno", None) or errno.EAGAIN,
                "no task left under the process limit (RLIMIT_NPROC counts every thread of the uid)",
            ) from exc
        for saved in self._saved.values():
            os.close(saved)
        self._saved = {}

    def run(self) -> None:
        _signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)
        fds = list(self.pipes)
        while fds:
            ready, _, _ = select.select(fds, [], [], 0.1)
            for w in self.writers.values():
                if w._parts:
                    w.flush()
            for fd in ready:
                if not self.drain(fd):
                    fds.remove(fd)

    def drain(self, fd: int) -> bool:
        """Send what is readable on ``fd`` now; False at EOF."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        name = self.pipes[fd]
        self.writers[name].flush()
        self.conn.send({"type": "stream", "name": name, "text": data.decode("utf-8", "replace")})
        return True

    def drain_all(self) -> None:
        """Send what subprocesses wrote so far (main thread, before a reply): one poll when nothing is."""
        if not self.pipes or not self._ready.poll(0):
            return
        for fd in self.pipes:
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:
                    break
                name = self.pipes[fd]
                self.writers[name].flush()
                self.conn.send({"type": "stream", "name": name, "text": data.decode("utf-8", "replace")})
