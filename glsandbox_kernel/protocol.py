"""Length-prefixed frames over a connected stream socket (both sides).

A frame is a 4-byte big-endian length followed by that many bytes of
:mod:`glsandbox_kernel.codec` data, which must decode to a ``dict`` with a
``str`` field ``"type"``. The host side (:class:`FrameChannel` with
``max_frame``) refuses oversize or malformed frames with
:class:`~glsandbox_kernel.exceptions.SandboxSecurityError`; the caller then
kills the worker. The worker uses the same class to read host requests.
"""

from __future__ import annotations

import array
import dataclasses
import errno
import os
import select
import signal
import socket
import struct
import time
from typing import Any

from . import codec
from .exceptions import SandboxSecurityError, WorkerGone

_HEADER = struct.Struct(">I")
#: the host stops the running call with this signal (enforcing mode); the worker raises SandboxStopped
STOP_SIGNAL = signal.SIGUSR1
MAX_PASSED_FDS = 4


class FrameChannel:
    """Send and receive frames on ``sock``; ``max_frame`` caps incoming sizes.

    Not thread-safe for concurrent readers; writers may share it when they
    hold :attr:`send_lock` (the worker's stream forwarder does).
    """

    def __init__(self, sock: socket.socket, *, max_frame: int = 64 * 1024 * 1024) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.max_frame = max_frame
        #: ``time.monotonic()`` instant by which an incoming frame must be decoded (the
        #: running call's timeout, set by the session); decoding is budgeted either way.
        self.decode_deadline: float | None = None
        self._buf = bytearray()
        # One reusable receive buffer: recv(n) would allocate (and for large
        # n, mmap and unmap) a fresh n-byte object on every read.
        self._rbuf = bytearray(256 * 1024)
        self._rview = memoryview(self._rbuf)

    # -- sending ---------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        """Encode and send one frame (blocking until written)."""
        payload = codec.encode(message)
        self.sock.sendall(_HEADER.pack(len(payload)) + payload)

    def send_with_fds(self, message: dict[str, Any], fds: list[int]) -> None:
        """Send one frame with ``fds`` attached (SCM_RIGHTS); used once, for hello."""
        payload = codec.encode(message)
        data = _HEADER.pack(len(payload)) + payload
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)

    # -- receiving -------------------------------------------------------
    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Return the next frame, or None when ``timeout`` passed with no full frame."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            msg = self._parse()
            if msg is not None:
                return msg
            if not self._fill(deadline):
                return None

    def recv_with_fds(self, timeout: float | None = None) -> tuple[dict[str, Any] | None, list[int]]:
        """Like :meth:`recv` but also collects SCM_RIGHTS fds (hello frame only)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fds: list[int] = []
        while True:
            msg = self._parse()
            if msg is not None:
                return msg, fds
            if not self._wait_readable(deadline):
                return None, fds
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(MAX_PASSED_FDS * 4))
            except InterruptedError:
                continue
            for level, ctype, cdata in ancdata:
                if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                    arr = array.array("i")
                    arr.frombytes(cdata[: len(cdata) - (len(cdata) % arr.itemsize)])
                    fds.extend(arr)
            if not data:
                for fd in fds:
                    os.close(fd)
                raise WorkerGone("worker closed the connection")
            self._buf += data

    def _wait_readable(self, deadline: float | None) -> bool:
        if deadline is None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            ready, _, _ = select.select([self.fd], [], [], remaining)
        except InterruptedError:
            return True
        return bool(ready)

    def _fill(self, deadline: float | None) -> bool:
        if not self._wait_readable(deadline):
            return False
        try:
            n = self.sock.recv_into(self._rbuf)
        except InterruptedError:
            return True
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                raise WorkerGone(f"connection lost: {exc}") from exc
            raise
        if not n:
            raise WorkerGone("worker closed the connection")
        self._buf += self._rview[:n]
        return True

    def _parse(self) -> dict[str, Any] | None:
        buf = self._buf
        if len(buf) < 4:
            return None
        (length,) = _HEADER.unpack_from(buf)
        if length > self.max_frame:
            raise SandboxSecurityError(
                f"frame of {length} bytes from the worker exceeds the cap of {self.max_frame} bytes"
            )
        if len(buf) < 4 + length:
            return None
        payload = bytes(buf[4 : 4 + length])
        del buf[: 4 + length]
        budget = codec.DEFAULT_BUDGET
        if self.decode_deadline is not None:
            budget = dataclasses.replace(budget, deadline=self.decode_deadline)
        msg = codec.decode(payload, budget)
        if type(msg) is not dict or type(msg.get("type")) is not str:
            raise SandboxSecurityError("malformed frame: not a message with a 'type' field")
        return msg
