"""The container's processes seen through pidfds (HOST side): liveness, waiting, exit status.

A pidfd names one process (no pid reuse) and reads as readable once it
ended; :class:`.worker.ContainerWorker` holds one for the container's init
and one for the worker.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import select
import struct


def open_pidfd(pid: int | None) -> int | None:
    """A pidfd for ``pid``; None for None, without pidfd support, or once the process is gone."""
    if pid is None or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def readable(fds: list[int], timeout: float | None) -> list[int]:
    """Those of ``fds`` readable within ``timeout`` s (None: no limit); a pidfd is once its process ended.

    poll(2), not select(2): a descriptor numbered over 1023 works too. A
    closed one raises OSError (EBADF) rather than reading as ended.
    """
    waiter = select.poll()
    for fd in fds:
        waiter.register(fd, select.POLLIN)
    ready = waiter.poll(None if timeout is None else max(0, math.ceil(timeout * 1000)))
    if any(events & select.POLLNVAL for _, events in ready):
        raise OSError(errno.EBADF, "a pidfd was closed")
    return [fd for fd, _ in ready]


def dup(fd: int | None) -> int | None:
    """Our own copy of ``fd`` (None for None, or if it cannot be copied)."""
    if fd is None:
        return None
    try:
        return os.dup(fd)
    except OSError:
        return None


# ioctl(pidfd, PIDFD_GET_INFO) with PIDFD_INFO_EXIT (Linux 6.15+): the exit
# status of a process that is not our child, once it has been reaped.
_PIDFD_GET_INFO = (3 << 30) | (64 << 16) | (0xFF << 8) | 11
_PIDFD_INFO_EXIT = 0x8


def pidfd_exit_code(pidfd: int | None) -> int | None:
    """Popen-style return code of the process behind ``pidfd``, or None if unknown."""
    if pidfd is None:
        return None
    buf = bytearray(64)
    struct.pack_into("Q", buf, 0, _PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, _PIDFD_GET_INFO, buf)
    except OSError:
        return None  # older kernel, or not reaped yet
    if not struct.unpack_from("Q", buf, 0)[0] & _PIDFD_INFO_EXIT:
        return None
    return os.waitstatus_to_exitcode(struct.unpack_from("i", buf, 60)[0])
