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
import errno
import math
import mmap
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from . import codec, codec_fast
from .exceptions import ForgedFrame, FrameTooLarge, SandboxSecurityError, WorkerGone

_HEADER = struct.Struct(">I")
_TIMEVAL = struct.Struct("@ll")  # struct timeval for SO_RCVTIMEO
#: frames at least this large are read into a buffer of their own, exactly sized, which the
#: decoded value then owns (numpy data become views of it: no copy on either side). The buffer
#: is private anonymous memory: a page is committed only when frame bytes land in it (a header
#: announcing the cap commits nothing), and it goes back to the system when the value is freed.
LARGE_FRAME = 1 << 20
_FROM_HOST_BUDGET = codec.DEFAULT_BUDGET._replace(hash_checks=False)
_DEFAULT_FRAME_CAP = 64 * 1024 * 1024  # OSSandboxConfig.max_frame_bytes's default
#: parts smaller than this are joined before sending; larger ones go to the socket as they are
_JOIN_BELOW = 256 * 1024


def frame_cap(max_frame_bytes: int, memory_limit_bytes: int | None) -> int:
    """The host's cap on incoming frames (host side; the session and backends set it).

    ``max_frame_bytes`` at its default (64 MiB) follows the memory limit: a
    result the sandbox could hold must be able to leave it, and a larger
    frame is refused (SandboxSecurityError) before anything is read. A cap
    set to any other value is kept as it is.
    """
    if max_frame_bytes == _DEFAULT_FRAME_CAP:
        return max(max_frame_bytes, memory_limit_bytes or 0)
    return max_frame_bytes


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
        #: outgoing frames larger than this are refused before a byte is sent (FrameTooLarge)
        self.max_send: int | None = None
        #: ``time.monotonic()`` instant by which an incoming frame must be decoded (the
        #: running call's timeout, set by the session); decoding is budgeted either way.
        self.decode_deadline: float | None = None
        self._buf = bytearray()
        # One reusable receive buffer: recv(n) would allocate (and for large
        # n, mmap and unmap) a fresh n-byte object on every read. Private anonymous
        # memory, not a bytearray: its pages are touched only as data arrives (a
        # bytearray is zeroed whole, 256 KiB of every idle session's worker and host).
        self._rbuf = mmap.mmap(-1, 256 * 1024, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._rview = memoryview(self._rbuf)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        #: the receive timeout set on the socket, in ms (None: none yet; False: not possible here)
        self._rcvtimeo: int | bool | None = None
        #: the large frame being read (its own buffer) and how many bytes of it arrived
        self._big: mmap.mmap | None = None
        self._big_got = 0
        #: bytes of a frame too large to receive that are still to be skipped
        self._skip = 0
        #: called with the size before a large frame's buffer is allocated (the worker imports numpy)
        self.before_large_frame: Callable[[int], None] | None = None
        #: send small plain messages as MessagePack (:mod:`.codec_fast`): set by the host when the
        #: worker's hello says it reads them, and on the worker once the host sent one
        self.fast_send = False
        #: the worker's channel: start sending fast frames once the peer sent one
        self.mirror_fast = False
        #: the peer is the host (set on the worker's channel): its fast frames skip the allowlist walk
        self.from_host = False

    # -- sending ---------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        """Encode and send one frame (blocking until written).

        Large buffers in ``message`` are written from their own memory, not
        copied into the frame; raises FrameTooLarge past :attr:`max_send`.
        """
        if self.fast_send:
            data = codec_fast.encode(message)
            # past max_send: the full codec below names the size and refuses it
            if data is not None and (self.max_send is None or len(data) <= self.max_send):
                self.sock.sendall(_HEADER.pack(len(data)) + data)
                return
        parts = codec.encode_parts(message)
        size = 0
        large = False
        for part in parts:
            n = part.nbytes if type(part) is memoryview else len(part)
            size += n
            large = large or n >= _JOIN_BELOW
        if self.max_send is not None and size > self.max_send:
            raise FrameTooLarge(
                f"a message of {size} bytes cannot be sent: more than the {self.max_send} bytes the "
                "other side may receive (its memory limit)",
                limit=self.max_send,
            )
        if not large:  # the usual frame: one join, one write
            self.sock.sendall(b"".join([_HEADER.pack(size), *parts]))
            return
        # Every join is made before the first byte is sent: running out of memory
        # half-way would leave a torn frame on the channel.
        chunks: list[bytes | memoryview] = []
        small: list[bytes | memoryview] = [_HEADER.pack(size)]
        for part in parts:
            if (part.nbytes if isinstance(part, memoryview) else len(part)) < _JOIN_BELOW:
                small.append(part)
                continue
            chunks += [b"".join(small), part]
            small = []
        if small:
            chunks.append(b"".join(small))
        for chunk in chunks:
            self.sock.sendall(chunk)

    def send_with_fds(self, message: dict[str, Any], fds: list[int]) -> None:
        """Send one frame with ``fds`` attached (SCM_RIGHTS); used once, for hello."""
        payload = codec.encode(message)
        data = _HEADER.pack(len(payload)) + payload
        if fds:
            try:
                socket.send_fds(self.sock, [data], fds)
            except OSError as exc:
                if exc.errno != errno.ETOOMANYREFS:
                    raise
                raise OSError(
                    exc.errno,
                    f"{exc.strerror}: the kernel refused to pass {len(fds)} fd(s) with the hello: this uid "
                    f"({os.getuid()}) has more fds in flight (sent on Unix sockets, not yet received: other "
                    "sandboxes of the same uid) than this process's RLIMIT_NOFILE",
                ) from exc
        else:
            self.sock.sendall(data)

    # -- receiving -------------------------------------------------------
    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Return the next frame, or None when ``timeout`` passed with no full frame."""
        if timeout is None and not self._buf and self._big is None and not self._skip:
            msg = self._recv_whole()  # the worker's read of its next request
            if msg is not None:
                return msg
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
        # poll, not select: select fails for fds past 1023 (a host with many sessions)
        try:
            ready = self._poll.poll(math.ceil(remaining * 1000))
        except InterruptedError:
            return True
        return bool(ready)

    def _set_rcvtimeo(self, ms: int) -> bool:
        """Make a blocking receive wait at most ``ms`` milliseconds; False where it cannot (then poll)."""
        if ms == self._rcvtimeo:
            return True
        if self.sock.gettimeout() is not None:  # Python's own timeout: the socket is non-blocking
            return False
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(ms // 1000, ms % 1000 * 1000))
        except OSError:
            self._rcvtimeo = False  # this kind of socket has no receive timeout: poll from now on
            return False
        self._rcvtimeo = ms
        return True

    def _recv_into(self, view: mmap.mmap | memoryview) -> int | None:
        """One receive into ``view``: its size, None when its wait ran out; WorkerGone at EOF or a reset."""
        try:
            n: int = self.sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                raise WorkerGone(f"connection lost: {exc}") from exc
            raise
        if not n:
            raise WorkerGone("worker closed the connection")
        return n

    def _recv_whole(self) -> dict[str, Any] | None:
        """A blocking read with nothing buffered: a frame that came whole in one receive (a worker's
        usual request) is decoded straight from the receive buffer, without :meth:`_parse`'s
        bookkeeping (each bytecode costs an emulated guest about 0.4 us); anything else is buffered
        for the general loop, which validates it as always."""
        n = self._recv_into(self._rbuf)
        if n is None:
            return None
        if n >= 4:
            (length,) = _HEADER.unpack_from(self._rbuf)
            if length == n - 4 and length <= self.max_frame:
                return self._decode(self._rbuf[4:n])
        self._buf += self._rview[:n]
        return None

    def _fill(self, deadline: float | None) -> bool:
        timed = deadline is not None and self._rcvtimeo is not False
        if timed:
            # One system call, not two: the receive itself waits until the deadline (SO_RCVTIMEO,
            # set again only when the wait changes: a session's usual wait is its 0.2 s tick).
            remaining = deadline - time.monotonic()  # type: ignore[operator]
            if remaining <= 0 or not self._set_rcvtimeo(math.ceil(remaining * 1000)):
                timed = False
        if not timed and not self._wait_readable(deadline):
            return False
        big = self._big
        n = self._recv_into(self._rbuf if big is None else memoryview(big)[self._big_got :])
        if n is None:  # the receive's wait ran out (or a signal came)
            return not timed
        if big is not None:
            self._big_got += n
        elif self._skip:
            skipped = min(n, self._skip)
            self._skip -= skipped
            self._buf += self._rview[skipped:n]
        else:
            self._buf += self._rview[:n]
        return True

    def _parse(self) -> dict[str, Any] | None:
        big = self._big
        if big is not None:
            if self._big_got < len(big):
                return None
            self._big = None
            return self._decode(big)
        if self._skip:
            return None
        buf = self._buf
        if len(buf) < 4:
            return None
        (length,) = _HEADER.unpack_from(buf)
        if length > self.max_frame:
            raise SandboxSecurityError(
                f"frame of {length} bytes from the worker exceeds the cap of {self.max_frame} bytes"
            )
        if len(buf) < 4 + length:
            if length >= LARGE_FRAME:
                self._start_big(length)
                return self._parse()
            return None
        payload = bytes(buf[4 : 4 + length])
        del buf[: 4 + length]
        return self._decode(payload)

    def _start_big(self, length: int) -> None:
        """Read the rest of a large frame into a buffer of its own (or skip it when memory is short)."""
        buf = self._buf
        have = len(buf) - 4
        if self.before_large_frame is not None:
            self.before_large_frame(length)
        try:
            # Not bytearray(length): that zeroes, so commits, the announced size before any of it
            # came (a peer's 14-byte half-frame held the cap on this side for the channel's life).
            big = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except (MemoryError, OSError):
            del buf[:]
            self._skip = length - have
            raise FrameTooLarge(f"a frame of {length} bytes does not fit in memory here; it was skipped") from None
        big[:have] = buf[4:]
        del buf[:]
        self._big, self._big_got = big, have

    def discard_partial(self) -> None:
        """Drop a frame still being read, and the bytes buffered after the last whole frame.

        Called when the peer is killed or the channel given up (a timeout, a kill, close):
        a large frame's buffer goes back to the system now, not whenever the channel is freed.
        """
        # Dropped, not closed: a reader on another thread may still be receiving into it
        # (it is unmapped once that receive returns).
        self._big, self._big_got, self._skip = None, 0, 0
        del self._buf[:]

    def _decode(self, payload: bytes | bytearray | mmap.mmap) -> dict[str, Any]:
        if payload and payload[0] in codec_fast.FIRST_BYTES:
            if self.mirror_fast:
                self.fast_send = True
            # a dict with str keys, refused otherwise (the host's frames, on the worker: a dict)
            msg = codec_fast.decode_trusted(payload) if self.from_host else codec_fast.decode(payload)
            if type(msg.get("type")) is not str:
                raise SandboxSecurityError("malformed frame: not a message with a 'type' field")
            return msg if self.from_host else _fields_checked(msg)
        # The host's frames on the worker: no hash-flood checks (the host is trusted; the sandbox pays).
        budget = _FROM_HOST_BUDGET if self.from_host else codec.DEFAULT_BUDGET
        deadline = self.decode_deadline
        # The call's deadline matters only where it falls before the frame's own allowance.
        if deadline is not None and deadline < (
            time.monotonic() + budget.seconds_floor + len(payload) / budget.bytes_per_second
        ):
            budget = budget._replace(deadline=deadline)
        msg = codec.decode(payload, budget)
        if type(msg) is not dict or type(msg.get("type")) is not str:
            raise SandboxSecurityError("malformed frame: not a message with a 'type' field")
        return msg if self.from_host else _fields_checked(msg)


#: the worker's frames: the fields every reader compares or prints, and the exact types the worker sends
_ID_TYPES = (int, type(None))  # exact types: a bool (an int subclass) is no request id
_STREAM_FIELDS = ("name", "text")


def _fields_checked(msg: dict[str, Any]) -> dict[str, Any]:
    """HOST side (the worker's frames, on arrival): ``msg``, or :class:`ForgedFrame` when its ``id`` is not
    an int or None, or a stream's ``name``/``text`` not text. Readers compare these (``rid != req_id``,
    ``name == "stderr"``): an array there raised on the host before the call's record was written."""
    wrong = [] if type(msg.get("id")) in _ID_TYPES else [f"id is {type(msg['id']).__name__}"]
    if msg["type"] == "stream":
        wrong += [f"{k} is {type(msg.get(k)).__name__}" for k in _STREAM_FIELDS if type(msg.get(k)) is not str]
    if wrong:
        raise ForgedFrame(
            f"protocol violation: the sandbox forged a {msg['type'][:40]!r} frame with fields of types "
            f"the worker never sends ({', '.join(wrong)})"
        )
    return msg


class AnswerWriter:
    """The host's answers to the worker's requests (``input_reply``), written without blocking.

    Host side: the session's read loop offers each answer and calls :meth:`flush` on every turn, so a
    worker that asks (floods ``input_request``) without reading cannot block the host in a send and the
    call's deadline is still checked. One answer is outstanding at most: while one is unwritten, further
    requests are dropped (a worker waiting in ``input()`` has one request outstanding, never two).
    """

    def __init__(self, chan: FrameChannel) -> None:
        self.chan = chan
        self._out = b""
        self._sent = 0

    @property
    def busy(self) -> bool:
        """An answer is still (partly) unwritten."""
        return self._sent < len(self._out)

    def offer(self, message: dict[str, Any]) -> None:
        """Queue ``message`` (a small frame) unless one is pending; write what the socket takes now."""
        if self.busy:
            return
        payload = codec.encode(message)
        self._out, self._sent = _HEADER.pack(len(payload)) + payload, 0
        self.flush()

    def flush(self) -> None:
        """Write as much of the pending answer as the socket takes, never waiting."""
        while self.busy:
            try:
                n = self.chan.sock.send(memoryview(self._out)[self._sent :], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            self._sent += n

    def torn(self) -> bool:
        """Drop the pending answer; True if part of it was written (the channel is out of step)."""
        torn = 0 < self._sent < len(self._out)
        self._out, self._sent = b"", 0
        return torn
