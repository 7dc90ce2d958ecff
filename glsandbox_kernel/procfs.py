"""Every read of /proc in one place (HOST side, and the zygote template).

``/proc/PID/stat`` is parsed here only: the fields after the last ``)``
(the command name may hold spaces and parentheses). Readings of a process
that is gone return None, never 0. Nothing here imports the rest of the
package, so any layer may use it without an import cycle.

Who calls: the zygote backends (worker tree, samples, pid checks), the
metrics fallback, the zygote template (children to kill), the container
backend (start times, parents), the cgroup readers (mountinfo, membership).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import NamedTuple

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Stat(NamedTuple):
    """The fields of ``/proc/PID/stat`` this project uses (a tuple: built on every warm call)."""

    state: str
    ppid: int
    #: utime + stime + cutime + cstime, in clock ticks (waited-for children included).
    cpu_ticks: int
    #: Start time in clock ticks since boot: with the pid, it names one process.
    start_ticks: int
    rss_pages: int

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_ticks / CLK_TCK

    @property
    def rss_bytes(self) -> int:
        return self.rss_pages * PAGE_SIZE

    @property
    def alive(self) -> bool:
        """Running or sleeping: not a zombie (Z) and not dead (X)."""
        return self.state not in ("Z", "X")


def parse_stat(data: bytes) -> Stat | None:
    """Parse the bytes of a ``/proc/PID/stat`` file; None when malformed."""
    try:
        f = data[data.rindex(b")") + 1 :].split(None, 22)  # the fields up to rss (the 22nd after the name)
        return Stat(f[0].decode(), int(f[1]), int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]), int(f[19]), int(f[21]))
    except (IndexError, ValueError, UnicodeDecodeError):  # rindex: ValueError when there is no ")"
        return None


def _read(path: str, size: int = -1) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return None


def stat(pid: int) -> Stat | None:
    """``/proc/PID/stat`` of ``pid``, or None when it is gone."""
    data = _read(f"/proc/{pid}/stat")
    return None if data is None else parse_stat(data)


def cpu_rss(pid: int) -> tuple[float, int] | None:
    """(cpu seconds incl. waited children, rss bytes) of ``pid``, or None."""
    st = stat(pid)
    return None if st is None else (st.cpu_seconds, st.rss_bytes)


def start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live ``pid``; None if gone or a zombie."""
    st = stat(pid)
    return st.start_ticks if st is not None and st.alive else None


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid``, or None when it is gone."""
    st = stat(pid)
    return None if st is None else st.ppid


def status_field(data: bytes, name: str) -> bytes | None:
    """The value of ``name:`` in the bytes of a ``/proc/PID/status`` file, stripped."""
    key = name.encode() + b":"
    i = data.find(key)
    if i < 0 or (i > 0 and data[i - 1 : i] != b"\n"):
        return None
    end = data.find(b"\n", i)
    return data[i + len(key) : end if end >= 0 else len(data)].strip()


def parse_kb(value: bytes | None) -> int | None:
    """``"1234 kB"`` -> bytes."""
    if not value:
        return None
    try:
        return int(value.split()[0]) * 1024
    except (IndexError, ValueError):
        return None


def vm_hwm(pid: int) -> int | None:
    """Peak resident set size (``VmHWM``) of ``pid`` in bytes, or None."""
    data = _read(f"/proc/{pid}/status")
    return None if data is None else parse_kb(status_field(data, "VmHWM"))


def threads(pid: int) -> int | None:
    """Tasks (threads) of ``pid`` (``Threads:``), or None when it is gone."""
    data = _read(f"/proc/{pid}/status")
    value = None if data is None else status_field(data, "Threads")
    try:
        return int(value) if value else None
    except ValueError:
        return None


def ns_pids(pid: int) -> list[int]:
    """The ``NSpid`` chain of host ``pid`` (outermost first); [] when gone."""
    data = _read(f"/proc/{pid}/status")
    value = None if data is None else status_field(data, "NSpid")
    try:
        return [int(x) for x in value.split()] if value else []
    except ValueError:
        return []


def seccomp_filters(pid: int) -> int | None:
    """How many seccomp filters ``pid`` runs under (``Seccomp_filters``, Linux 5.9+), or None."""
    data = _read(f"/proc/{pid}/status")
    value = None if data is None else status_field(data, "Seccomp_filters")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def fd_link(fd: int) -> str | None:
    """What this process's ``fd`` is (``/proc/self/fd/N``), e.g. ``anon_inode:seccomp notify``."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def tasks_of_uid(uid: int, *, exclude: int | None = None) -> int | None:
    """Tasks (threads) whose real uid is ``uid``, as ``RLIMIT_NPROC`` counts them; None without /proc.

    ``exclude``: a pid not to count (the caller). Processes that vanish
    during the scan are skipped. Used by the rlimits step (child side).
    """
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    want = str(uid).encode()
    total = 0
    for name in names:
        if not name.isdigit() or (exclude is not None and int(name) == exclude):
            continue
        data = _read(f"/proc/{name}/status")
        if data is None:
            continue
        uids = status_field(data, "Uid")
        if not uids or uids.split()[0] != want:
            continue
        threads = status_field(data, "Threads")
        total += int(threads) if threads and threads.isdigit() else 1
    return total


def children_of(ppid: int) -> list[int]:
    """Pids whose parent is ``ppid``: every thread's ``task/TID/children`` (a child forked by another thread
    than the main one is listed only in its own: it held 256 MiB of nameless files on the disk guard's
    folders uncounted), else a scan of /proc."""
    try:
        tids = os.listdir(f"/proc/{ppid}/task")
    except OSError:
        tids = []
    kids = [_read(f"/proc/{ppid}/task/{tid}/children") for tid in tids]
    if kids and all(data is not None for data in kids):
        return [int(x) for data in kids if data for x in data.split()]
    out = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit() and parent_pid(int(name)) == ppid:
                out.append(int(name))
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before their children."""
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children_of(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


def ns_link(pid: int | str, kind: str) -> str | None:
    """The ``/proc/PID/ns/KIND`` link (e.g. ``"pid:[4026531836]"``), or None."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def cgroup_entries(pid: int | str) -> list[tuple[str, str, str]] | None:
    """``/proc/PID/cgroup`` as (hierarchy id, controllers, path) lines; None when gone."""
    data = _read(f"/proc/{pid}/cgroup")
    if data is None:
        return None
    out = []
    for line in data.decode(errors="replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
    return out


@dataclasses.dataclass(frozen=True)
class Mount:
    """One line of ``/proc/PID/mountinfo``."""

    root: str
    mount_point: str
    fstype: str
    super_options: str


def mountinfo(pid: int | str = "self") -> list[Mount]:
    """The mounts ``pid`` sees (this process by default)."""
    data = _read(f"/proc/{pid}/mountinfo")
    out = []
    for line in (data or b"").decode(errors="replace").splitlines():
        left, _, right = line.partition(" - ")
        lf, rf = left.split(), right.split()
        if len(lf) >= 5 and len(rf) >= 1:
            out.append(Mount(lf[3], lf[4], rf[0], rf[2] if len(rf) > 2 else ""))
    return out


class Reading(NamedTuple):
    """One kept-fd reading of a process (:meth:`ProcessReader.reading`)."""

    stat: Stat
    #: peak resident set (``VmHWM``) since start or the last :meth:`ProcessReader.reset_peak`, bytes
    hwm: int | None
    #: file-backed resident pages now (``RssFile``): page cache, not the sandbox's own memory
    rss_file: int | None


class ProcessReader:
    """Kept-open ``stat``/``status``/``clear_refs`` fds of one process, re-read with ``pread``.

    The per-call path of the zygote backends' metrics (HOST side): two
    ``pread`` per reading, one ``write`` per peak reset, and no reset when the
    peak already equals the resident size (nothing to reset). About 10x
    cheaper than opening the files each time. :meth:`close` releases the fds.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._stat: int | None = None
        self._status: int | None = None
        self._clear: int | None = None
        self.last: Reading | None = None
        try:
            self._stat = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            self._status = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.close()
            return
        with contextlib.suppress(OSError):  # not ours to reset (another uid): peaks stay since start
            self._clear = os.open(f"/proc/{pid}/clear_refs", os.O_WRONLY | os.O_CLOEXEC)

    def reading(self) -> Reading | None:
        """Stat, peak and file-backed resident bytes now, or None once the process is gone."""
        if self._stat is None or self._status is None:
            return None
        try:
            st = parse_stat(os.pread(self._stat, 4096, 0))
            status = os.pread(self._status, 8192, 0)
        except OSError:
            return None
        if st is None:
            return None
        self.last = Reading(st, _status_kb(status, b"\nVmHWM:"), _status_kb(status, b"\nRssFile:"))
        return self.last

    def read(self) -> tuple[Stat, int | None] | None:
        """(stat, VmHWM bytes), or None once the process is gone."""
        r = self.reading()
        return None if r is None else (r.stat, r.hwm)

    def reset_peak(self) -> None:
        """Start a new peak window; skipped when the last reading's peak was the resident size."""
        last = self.last
        if self._clear is None or (last is not None and last.hwm is not None and last.hwm <= last.stat.rss_bytes):
            return
        with contextlib.suppress(OSError):
            os.write(self._clear, b"5")

    def close(self) -> None:
        for fd in (self._stat, self._status, self._clear):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._stat = self._status = self._clear = None


def _status_kb(data: bytes, key: bytes) -> int | None:
    """The ``key`` line's ``N kB`` of a ``/proc/PID/status`` file, in bytes (``key`` starts with a newline:
    the per-call reading's one ``find``, instead of :func:`status_field` and :func:`parse_kb`)."""
    i = data.find(key)
    if i < 0:
        return None
    i += len(key)
    end = data.find(b"\n", i)
    try:
        return int(data[i : end if end >= 0 else len(data)].split()[0]) * 1024
    except (IndexError, ValueError):
        return None


def tree_cpu_rss(pids: list[int]) -> tuple[float, int, int]:
    """(cpu seconds, rss bytes, processes read) summed over ``pids``; the gone are skipped."""
    cpu, rss, seen = 0.0, 0, 0
    for pid in pids:
        st = stat(pid)
        if st is not None:
            cpu, rss, seen = cpu + st.cpu_seconds, rss + st.rss_bytes, seen + 1
    return cpu, rss, seen


def clear_refs(pid: int) -> None:
    """Reset ``pid``'s peak RSS (write 5 to ``clear_refs``); silently nothing when not allowed."""
    try:
        fd = os.open(f"/proc/{pid}/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, b"5")
    except OSError:
        pass
    finally:
        os.close(fd)
