"""Large frames (outside review 18): memory is committed as the peer's bytes arrive, not as announced."""

from __future__ import annotations

import os
import socket
import struct
import threading

import numpy as np

from glsandbox_kernel.protocol import FrameChannel

MiB = 1 << 20


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_half_frame_commits_what_arrived_and_is_dropped_when_the_channel_is_given_up() -> None:
    a, b = socket.socketpair()
    host = FrameChannel(a, max_frame=512 * MiB)
    try:
        before = _rss()
        b.sendall(struct.pack(">I", 256 * MiB) + b"\0" * 65536)  # announced 256 MiB, 64 KiB sent
        assert host.recv(timeout=0.5) is None  # the rest never comes
        assert host._big is not None and host._big_got == 65536  # the partial frame is held...
        grown = _rss() - before
        assert grown < 32 * MiB, f"RSS grew by {grown // MiB} MiB for 64 KiB of a 256 MiB frame"
        host.discard_partial()  # ...until the channel is given up (timeout, kill, close)
        assert host._big is None and not host._buf and host.recv(timeout=0.1) is None
    finally:
        a.close()
        b.close()


def test_a_large_frame_in_many_receives_decodes_whole_as_writable_arrays() -> None:
    a, b = socket.socketpair()
    host, worker = FrameChannel(a, max_frame=512 * MiB), FrameChannel(b)
    value = {"arr": np.arange(3 * MiB, dtype=np.int64), "blob": b"x" * (5 * MiB + 3)}
    sender = threading.Thread(target=worker.send, args=({"type": "result", "value": value},))
    sender.start()
    try:
        msg = host.recv(timeout=60)
        sender.join()
        assert msg is not None and msg["type"] == "result"
        got = msg["value"]
        assert np.array_equal(got["arr"], value["arr"]) and got["blob"] == value["blob"]
        got["arr"][0] = 7  # the host owns the frame's memory: its arrays are writable
        assert host._big is None and not host._buf  # nothing of it left on the channel
    finally:
        sender.join()
        a.close()
        b.close()
