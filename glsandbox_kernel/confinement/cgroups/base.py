"""The one cgroup interface (HOST side): readings for any cgroup, lifecycle for ours.

:class:`Cgroup` reads the trusted figures (memory current/peak, OOM kills,
pids, CPU and io usage) through files opened once and re-read with
``pread``. A cgroup made by :func:`~glsandbox_kernel.confinement.cgroups.create_cgroup`
is *owned* (we set its limits, move processes in, rename it, kill what is in
it and remove it); one found with
:func:`~glsandbox_kernel.confinement.cgroups.from_pid` (a container's, made by
its runtime) is read-only: the lifecycle methods refuse it.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import signal
import time
from typing import Any, ClassVar, Literal

from ... import creator, procfs
from ...config import ResourceLimits
from .._common import ConfinementError
from .section import CgroupSection

CG_ROOT = "/sys/fs/cgroup"
CPU_PERIOD_US = 100_000


def read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def to_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def write_named(path: str, value: str) -> None:
    """:func:`write`, with ``path`` on the ``OSError`` (for the error message)."""
    try:
        write(path, value)
    except OSError as exc:
        exc.filename = path
        raise


def dir_name(name: str) -> str:
    """The directory name of an owned cgroup: ``glsandbox-<name>-h<creator token>``.

    The token (pid, start time, pid namespace of this host process,
    :func:`glsandbox_kernel.creator.token`) lets a later host process sweep
    what a killed one left (:mod:`.sweep`)."""
    return f"glsandbox-{name}-h{creator.token()}"


def rmdir_quiet(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def parse_keyed(text: str | None) -> dict[str, int] | None:
    """``key value`` lines (memory.events, cpu.stat, memory.oom_control) -> dict; None if unreadable."""
    if text is None:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 2:
            with contextlib.suppress(ValueError):
                out[f[0]] = int(f[1])
    return out


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """Controller (or "" for v2) -> cgroup path of ``pid``, from /proc/PID/cgroup."""
    out: dict[str, str] = {}
    for _hid, controllers, path in procfs.cgroup_entries(pid) or []:
        for ctrl in controllers.split(",") if controllers else [""]:
            out[ctrl] = path
    return out


def join_mount(mount_point: str, root: str, cgpath: str) -> str:
    """The directory of cgroup ``cgpath`` under a hierarchy mounted at ``mount_point`` from ``root``."""
    if root != "/" and (cgpath == root or cgpath.startswith(root + "/")):
        cgpath = cgpath[len(root) :]
    return os.path.normpath(mount_point + "/" + cgpath)


class Cgroup(abc.ABC):
    """One sandbox's cgroup, host view: v1 (:class:`~.v1.CgroupV1`) or v2 (:class:`~.v2.CgroupV2`).

    Every reading returns None when this machine cannot measure it; they are
    the trusted figures of the monitor and the metrics. ``owned`` is False
    for a cgroup found with ``from_pid`` (read-only).
    """

    version: ClassVar[int]

    def __init__(self, name: str, *, owned: bool = True) -> None:
        self.name = name
        self.owned = owned
        self._oom_baseline = 0
        self._fds: dict[str, int | None] = {}
        #: the last reading's peak was the usage itself: a peak reset now would change nothing
        self._peak_is_current = False

    # -- kept-open files ---------------------------------------------------------
    def _fd(self, path: str) -> int | None:
        """A kept-open fd for ``path``: read-write where allowed (v2's memory.peak must be
        reset and read through the same open file), else read-only; None if it cannot be opened."""
        if path not in self._fds:
            fd: int | None = None
            for flags in (os.O_RDWR, os.O_RDONLY):
                try:
                    fd = os.open(path, flags | os.O_CLOEXEC)
                    break
                except OSError:
                    continue
            if fd is None:
                return None  # not cached: the file may appear later (controller enabled)
            self._fds[path] = fd
        return self._fds[path]

    def _text(self, path: str) -> str | None:
        """Read a cgroup file through a kept-open fd (``pread``): the readings sit on the
        per-call path, and opening a cgroup file costs ~20x more than reading it."""
        fd = self._fd(path)
        if fd is None:
            return None
        try:
            return os.pread(fd, 65536, 0).decode()
        except OSError:
            return None

    def _int(self, path: str) -> int | None:
        return to_int(self._text(path))

    def _poke(self, path: str, data: bytes) -> None:
        """Write ``data`` through the kept-open fd of ``path`` (peak resets)."""
        fd = self._fd(path)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(fd, data, 0)

    def close(self) -> None:
        """Release the kept-open files (the cgroup itself stays). Idempotent."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- readings ----------------------------------------------------------------
    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the cgroup's directory is still there."""

    @abc.abstractmethod
    def memory_current(self) -> int | None:
        """Bytes charged now."""

    @abc.abstractmethod
    def memory_peak(self) -> int | None:
        """Highest bytes charged since creation or the last :meth:`reset_peak`."""

    def reset_peak(self) -> None:
        """Start a new peak window (called by the session before each call).

        Skipped when the last :meth:`sample` read a peak no higher than the usage: resetting
        sets the peak to the usage, which it was then (the worker is idle between calls), so
        the write would change nothing; as for /proc (:meth:`.procfs.ProcessReader.reset_peak`).
        """
        if self._peak_is_current:
            return
        self._write_peak_reset()

    @abc.abstractmethod
    def _write_peak_reset(self) -> None:
        """Reset the kernel's peak (the write itself)."""

    @abc.abstractmethod
    def oom_kills(self) -> int | None:
        """How many processes the kernel's OOM killer killed in this cgroup."""

    @abc.abstractmethod
    def pids_current(self) -> int | None:
        """Tasks in the cgroup now."""

    def pids_peak(self) -> int | None:
        """Most tasks at once since the cgroup was created, as the kernel keeps it (``pids.peak``:
        cgroup v2 since Linux 6.1, v1 on recent kernels); None where it keeps none (never a sample)."""
        return None

    @abc.abstractmethod
    def cpu_usage_seconds(self) -> float | None:
        """CPU time used by the cgroup, user + system."""

    @abc.abstractmethod
    def io_bytes(self) -> tuple[int | None, int | None]:
        """(read, written) block-io bytes, where the io controller is present and counts them
        (None for what it does not: cgroup v1 misses buffered writeback)."""

    @abc.abstractmethod
    def procs(self) -> list[int]:
        """Pids (host view) of every process in the cgroup."""

    def oom_killed(self) -> bool | None:
        """Whether an OOM kill happened since the last :meth:`mark_oom_baseline`."""
        n = self.oom_kills()
        return None if n is None else n > self._oom_baseline

    def mark_oom_baseline(self) -> None:
        """Remember the current OOM-kill count (call before each call)."""
        self._oom_baseline = self.oom_kills() or 0

    def sample(self, *, per_call: bool = False) -> dict[str, Any] | None:
        """All readings at once, keys as in ``backends.base.ResourceSample``; None once gone.

        ``per_call``: the session's reading at a call's end, which the call's figures come from:
        without ``pids`` and ``oom_killed`` (None: not read), which no call figure uses (the
        monitor's samples and an exit's cause read them), two fewer reads on every call.
        """
        current = self.memory_current()
        if current is None and not self.exists():
            return None
        peak = self.memory_peak()
        self._peak_is_current = peak is not None and current is not None and peak <= current
        rd, wr = self.io_bytes()
        return {
            "cpu_time": self.cpu_usage_seconds(),
            "memory_current": current,
            "memory_peak": peak,
            "pids": None if per_call else self.pids_current(),
            "pids_peak": self.pids_peak(),
            "disk_read_bytes": rd,
            "disk_write_bytes": wr,
            "oom_killed": None if per_call else self.oom_killed(),
            "source": f"cgroup-v{self.version}",
        }

    # -- lifecycle (owned cgroups only) ---------------------------------------------
    def _require_owned(self, what: str) -> None:
        if not self.owned:
            raise ConfinementError("cgroups", f"{what} {self.name}", errno.EPERM, "a cgroup found by pid is read-only")

    @classmethod
    @abc.abstractmethod
    def detect(cls) -> tuple[bool, str]:
        """Whether this implementation can create cgroups here, and why not."""

    @classmethod
    @abc.abstractmethod
    def parent_dirs(cls) -> list[str]:
        """The directories this process's cgroups are made in (one per hierarchy)."""

    @classmethod
    @abc.abstractmethod
    def cpu_quota_missing(cls) -> str:
        """Why a cgroup made here would have no CPU quota ("" when it would)."""

    @abc.abstractmethod
    def create(self, limits: ResourceLimits, *, extra_processes: int = 0) -> None:
        """Create the cgroup and set the limits; undoes itself on failure.

        Every limit it is given is set, or it raises :class:`ConfinementError`:
        a ``cpu_percent_limit`` without the cpu controller is refused, never skipped.
        """

    @abc.abstractmethod
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files the child writes its pid to."""

    @abc.abstractmethod
    def _kill_all_once(self) -> None: ...

    @abc.abstractmethod
    def _rmdirs(self) -> list[str]:
        """Remove the directories; returns those that could not be removed."""

    @abc.abstractmethod
    def _paths(self) -> dict[str, str]:
        """Controller ("" for v2) -> this cgroup's directory."""

    @abc.abstractmethod
    def _set_paths(self, paths: dict[str, str]) -> None: ...

    @abc.abstractmethod
    def _membership(self) -> dict[str, str]:
        """Controller ("" for v2) -> the tail of our cgroup path as /proc/<pid>/cgroup shows it."""

    def child_section(self, *, attach_by: Literal["child", "host"] = "child") -> CgroupSection:
        """The ``cgroup`` section of a child plan (see ``attach_child``).

        ``attach_by="host"``: the host moves the sandbox's processes with
        :meth:`attach` once they are set up (and before any untrusted code
        runs); the child then only reports.
        """
        return CgroupSection(version=self.version, name=self.name, procs=tuple(self.procs_files()), attach_by=attach_by)

    def attach(self, pids: list[int]) -> None:
        """HOST side: move ``pids`` (whole thread groups) into this cgroup, every hierarchy.

        Processes already inside are skipped: every write to ``cgroup.procs``
        takes the global cgroup lock, which may first wait for an RCU grace
        period. Raises :class:`ConfinementError` naming the file and errno.
        """
        self._require_owned("attach to")
        for pid in pids:
            if self.contains(pid):
                continue
            for path in self.procs_files():
                try:
                    write(path, str(pid))
                except ProcessLookupError:
                    break  # already gone
                except OSError as exc:
                    raise ConfinementError("cgroups", f"write {pid} to {path}", exc.errno) from exc

    def contains(self, pid: int) -> bool:
        """HOST side: whether ``pid`` is in this cgroup in every hierarchy (from /proc)."""
        wanted = self._membership()
        seen = own_cgroups(pid)
        if not seen or not wanted:
            return False
        return all(seen.get(ctrl, "").endswith(suffix) for ctrl, suffix in wanted.items())

    def rename(self, name: str) -> None:
        """HOST side: rename the cgroup in place (processes stay; a warm-pool handover).

        cgroup v1 allows it; v2 refuses (``OSError``), leaving the old name.
        All or nothing: a partial rename is undone.
        """
        self._require_owned("rename")
        old = self._paths()
        moves: dict[str, str] = {}
        for path in sorted(set(old.values())):
            moves[path] = os.path.join(os.path.dirname(path), dir_name(name))
        done: list[tuple[str, str]] = []
        try:
            for src, dst in moves.items():
                os.rename(src, dst)
                done.append((src, dst))
        except OSError:
            for src, dst in reversed(done):
                with contextlib.suppress(OSError):
                    os.rename(dst, src)
            raise
        self.close()  # the kept-open fds still work, but their paths are stale keys
        self._set_paths({ctrl: moves[p] for ctrl, p in old.items()})
        self.name = name

    def kill_all(self, timeout: float = 2.0) -> bool:
        """SIGKILL every process in the cgroup until it is empty; True when empty."""
        self._require_owned("kill the processes of")
        deadline = time.monotonic() + timeout
        while True:
            if not self.procs():
                return True
            self._kill_all_once()
            if time.monotonic() > deadline:
                return not self.procs()
            time.sleep(0.005)

    def _kill_each(self) -> None:
        for pid in self.procs():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, timeout: float = 2.0) -> None:
        """Kill what is left, then remove the cgroup. Idempotent; HOST side."""
        self._require_owned("remove")
        self.kill_all(timeout)
        self.close()
        deadline = time.monotonic() + timeout
        while True:
            left = self._rmdirs()
            if not left:
                return
            if time.monotonic() > deadline:
                raise ConfinementError("cgroups", f"rmdir({left[0]!r})", errno.EBUSY, "processes remain in the cgroup")
            time.sleep(0.01)

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.remove()
        else:
            self.close()
