"""Step: cgroups (memory, pids, cpu, io) behind one interface, v1 and v2.

Host side: :func:`available` says whether we can make cgroups here and why
not; :func:`create_cgroup` picks :class:`CgroupV2` or :class:`CgroupV1` by
detection (as gVisor's ``runsc/cgroup`` does), creates one cgroup per
sandbox under the host process's own cgroup (so outer limits still apply),
and returns a :class:`CgroupManager` that reads the trusted figures
(memory current/peak, OOM kills, pids, CPU and io usage) and removes the
cgroup afterwards, killing whatever is left in it first.

Attaching, two ways (the plan's ``attach_by``):

- ``"child"``: :func:`attach_child` writes the calling process's pid into
  the cgroup's ``cgroup.procs`` files, first thing in the child, so every
  process it starts is charged.
- ``"host"`` (the NAMESPACE backend): :meth:`CgroupManager.attach` moves the
  sandbox's processes from the host while they set up, and once more after
  the worker's hello, before any untrusted code runs. Every migration first
  waits for an RCU grace period (about 15 ms on a small VM, migrations soon
  after do not); done this way the wait overlaps with the set-up instead of
  delaying it.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import functools
import os
import signal
import time
import uuid
from typing import Any, ClassVar

from ..config import ResourceLimits
from ._common import ConfinementError

_CG_ROOT = "/sys/fs/cgroup"
_CPU_PERIOD_US = 100_000


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _to_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(mount point, root, fstype, super options) of each mount, host side."""
    out = []
    text = _read("/proc/self/mountinfo") or ""
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        lf = left.split()
        rf = right.split()
        if len(lf) >= 5 and len(rf) >= 3:
            out.append((lf[4], lf[3], rf[0], rf[2]))
    return out


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for v2) -> own cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for ctrl in parts[1].split(",") if parts[1] else [""]:
            out[ctrl] = parts[2]
    return out


class CgroupManager(abc.ABC):
    """One sandbox's cgroup, host view. Made by :func:`create_cgroup`.

    Every reading returns None when this machine cannot measure it; they are
    the trusted figures of the monitor and the metrics.
    """

    version: ClassVar[int]

    def __init__(self, name: str) -> None:
        self.name = name
        self._oom_baseline = 0
        self._fds: dict[str, int] = {}

    def _text(self, path: str) -> str | None:
        """Read a cgroup file through a kept-open fd (``pread``): the readings sit on the
        per-call path, and opening a cgroup file costs ~20x more than reading it."""
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            self._fds[path] = fd
        try:
            return os.pread(fd, 65536, 0).decode()
        except OSError:
            return None

    def _int(self, path: str) -> int | None:
        return _to_int(self._text(path))

    def _close_fds(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    @classmethod
    @abc.abstractmethod
    def detect(cls) -> tuple[bool, str]:
        """Whether this implementation can create cgroups here, and why not."""

    @abc.abstractmethod
    def create(self, limits: ResourceLimits, *, extra_processes: int = 0) -> None:
        """Create the cgroup and set the limits; undoes itself on failure."""

    @abc.abstractmethod
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files the child writes its pid to."""

    @abc.abstractmethod
    def memory_current(self) -> int | None:
        """Bytes charged now."""

    @abc.abstractmethod
    def memory_peak(self) -> int | None:
        """Highest bytes charged since creation or the last :meth:`reset_peak`."""

    @abc.abstractmethod
    def reset_peak(self) -> None:
        """Start a new peak window (called by the session before each call)."""

    @abc.abstractmethod
    def oom_kills(self) -> int | None:
        """How many processes the kernel's OOM killer killed in this cgroup."""

    @abc.abstractmethod
    def pids_current(self) -> int | None:
        """Tasks in the cgroup now."""

    @abc.abstractmethod
    def cpu_usage_seconds(self) -> float | None:
        """CPU time used by the cgroup, user + system."""

    @abc.abstractmethod
    def io_bytes(self) -> tuple[int | None, int | None]:
        """(read, written) block-io bytes, where the io controller is present."""

    @abc.abstractmethod
    def procs(self) -> list[int]:
        """Pids (host view) of every process in the cgroup."""

    @abc.abstractmethod
    def _kill_all_once(self) -> None: ...

    @abc.abstractmethod
    def _rmdirs(self) -> list[str]:
        """Remove the directories; returns those that could not be removed."""

    def child_section(self, *, attach_by: str = "child") -> dict[str, Any]:
        """The ``cgroup`` section of a child plan (see :func:`attach_child`).

        ``attach_by="host"``: the host moves the sandbox's processes with
        :meth:`attach` once they are set up (and before any untrusted code
        runs); the child then only reports.
        """
        return {
            "enabled": True,
            "version": self.version,
            "name": self.name,
            "procs": self.procs_files(),
            "attach_by": attach_by,
        }

    def attach(self, pids: list[int]) -> None:
        """HOST side: move ``pids`` (whole thread groups) into this cgroup, every hierarchy.

        Processes already inside are skipped: every write to ``cgroup.procs``
        takes the global cgroup lock, which may first wait for an RCU grace
        period. Raises :class:`ConfinementError` naming the file and errno.
        """
        for pid in pids:
            if self.contains(pid):
                continue
            for path in self.procs_files():
                try:
                    _write(path, str(pid))
                except ProcessLookupError:
                    break  # already gone
                except OSError as exc:
                    raise ConfinementError("cgroups", f"write {pid} to {path}", exc.errno) from exc

    def contains(self, pid: int) -> bool:
        """HOST side: whether ``pid`` is in this cgroup in every hierarchy (from /proc)."""
        wanted = self._membership()
        text = _read(f"/proc/{pid}/cgroup")
        if text is None or not wanted:
            return False
        seen: dict[str, str] = {}
        for line in text.splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3:
                for ctrl in parts[1].split(",") if parts[1] else [""]:
                    seen[ctrl] = parts[2]
        return all(seen.get(ctrl, "").endswith(suffix) for ctrl, suffix in wanted.items())

    @abc.abstractmethod
    def _paths(self) -> dict[str, str]:
        """Controller ("" for v2) -> this cgroup's directory."""

    @abc.abstractmethod
    def _set_paths(self, paths: dict[str, str]) -> None: ...

    def rename(self, name: str) -> None:
        """HOST side: rename the cgroup in place (processes stay; a warm-pool handover).

        cgroup v1 allows it; v2 refuses (``OSError``), leaving the old name.
        All or nothing: a partial rename is undone.
        """
        old = self._paths()
        moves: dict[str, str] = {}
        for path in sorted(set(old.values())):
            moves[path] = os.path.join(os.path.dirname(path), f"glsandbox-{name}")
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
        self._set_paths({ctrl: moves[p] for ctrl, p in old.items()})
        self.name = name

    @abc.abstractmethod
    def _membership(self) -> dict[str, str]:
        """Controller ("" for v2) -> the tail of our cgroup path as /proc/<pid>/cgroup shows it."""

    def oom_killed(self) -> bool | None:
        """Whether an OOM kill happened since the last :meth:`mark_oom_baseline`."""
        n = self.oom_kills()
        return None if n is None else n > self._oom_baseline

    def mark_oom_baseline(self) -> None:
        """Remember the current OOM-kill count (call before each call)."""
        self._oom_baseline = self.oom_kills() or 0

    def sample(self) -> dict[str, Any]:
        """All readings at once, keys as in ``backends.base.ResourceSample``."""
        rd, wr = self.io_bytes()
        return {
            "cpu_time": self.cpu_usage_seconds(),
            "memory_current": self.memory_current(),
            "memory_peak": self.memory_peak(),
            "pids": self.pids_current(),
            "disk_read_bytes": rd,
            "disk_write_bytes": wr,
            "oom_killed": self.oom_killed(),
            "source": f"cgroup-v{self.version}",
        }

    def kill_all(self, timeout: float = 2.0) -> bool:
        """SIGKILL every process in the cgroup until it is empty; True when empty."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.procs():
                return True
            self._kill_all_once()
            if time.monotonic() > deadline:
                return not self.procs()
            time.sleep(0.005)

    def remove(self, timeout: float = 2.0) -> None:
        """Kill what is left, then remove the cgroup. Idempotent; HOST side."""
        self.kill_all(timeout)
        self._close_fds()
        deadline = time.monotonic() + timeout
        while True:
            left = self._rmdirs()
            if not left:
                return
            if time.monotonic() > deadline:
                raise ConfinementError("cgroups", f"rmdir({left[0]!r})", errno.EBUSY, "processes remain in the cgroup")
            time.sleep(0.01)

    def __enter__(self) -> CgroupManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class CgroupV1(CgroupManager):
    """cgroup v1: one directory per controller hierarchy (memory, pids, cpu, cpuacct, blkio)."""

    version = 1
    REQUIRED = ("memory", "pids")
    OPTIONAL = ("cpu", "cpuacct", "blkio")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.dirs: dict[str, str] = {}

    @staticmethod
    def _hierarchies() -> dict[str, str]:
        """Controller -> directory of this process's own cgroup in that hierarchy."""
        own = _own_cgroups()
        out: dict[str, str] = {}
        for mnt, root, fstype, opts in _mountinfo():
            if fstype != "cgroup":
                continue
            for ctrl in opts.split(","):
                if ctrl in CgroupV1.REQUIRED + CgroupV1.OPTIONAL and ctrl in own:
                    path = own[ctrl]
                    if root != "/" and path.startswith(root):
                        path = path[len(root) :]
                    out[ctrl] = os.path.normpath(mnt + "/" + path)
        return out

    @classmethod
    def detect(cls) -> tuple[bool, str]:
        h = cls._hierarchies()
        missing = [c for c in cls.REQUIRED if c not in h]
        if missing:
            return False, f"cgroup v1: controller(s) {', '.join(missing)} not mounted"
        for ctrl in cls.REQUIRED:
            if not os.access(h[ctrl], os.W_OK):
                why = "not root and no delegation" if os.geteuid() != 0 else "read-only"
                return False, f"unavailable: {why} ({h[ctrl]} is not writable)"
        extra = [c for c in cls.OPTIONAL if c in h]
        return True, "cgroup v1: " + ", ".join((*cls.REQUIRED, *extra))

    def create(self, limits: ResourceLimits, *, extra_processes: int = 0) -> None:
        h = self._hierarchies()
        with contextlib.ExitStack() as undo:
            made: dict[str, str] = {}
            for ctrl, parent in h.items():
                path = os.path.join(parent, f"glsandbox-{self.name}")
                if path not in made.values():
                    try:
                        os.mkdir(path, 0o755)
                    except OSError as exc:
                        raise ConfinementError("cgroups", f"mkdir({path!r})", exc.errno) from exc
                    undo.callback(_rmdir_quiet, path)
                made[ctrl] = path
            self.dirs = made
            try:
                self._set_limits(limits, extra_processes)
            except OSError as exc:
                raise ConfinementError("cgroups", f"write {exc.filename}", exc.errno) from exc
            undo.pop_all()
        self.mark_oom_baseline()

    def _set_limits(self, limits: ResourceLimits, extra_processes: int) -> None:
        mem = self.dirs["memory"]
        if limits.memory_limit_bytes is not None:
            _write_named(mem + "/memory.limit_in_bytes", str(limits.memory_limit_bytes))
            if os.path.exists(mem + "/memory.memsw.limit_in_bytes"):
                with contextlib.suppress(OSError):
                    _write(mem + "/memory.memsw.limit_in_bytes", str(limits.memory_limit_bytes))
            with contextlib.suppress(OSError):
                _write(mem + "/memory.swappiness", "0")
        if limits.max_processes is not None:
            _write_named(self.dirs["pids"] + "/pids.max", str(limits.max_processes + extra_processes))
        if limits.cpu_percent_limit is not None and "cpu" in self.dirs:
            quota = max(1000, int(_CPU_PERIOD_US * limits.cpu_percent_limit / 100))
            _write_named(self.dirs["cpu"] + "/cpu.cfs_period_us", str(_CPU_PERIOD_US))
            _write_named(self.dirs["cpu"] + "/cpu.cfs_quota_us", str(quota))

    def procs_files(self) -> list[str]:
        return sorted({d + "/cgroup.procs" for d in self.dirs.values()})

    def _paths(self) -> dict[str, str]:
        return dict(self.dirs)

    def _set_paths(self, paths: dict[str, str]) -> None:
        self.dirs = paths

    def _membership(self) -> dict[str, str]:
        return {ctrl: "/" + os.path.basename(d) for ctrl, d in self.dirs.items()}

    def memory_current(self) -> int | None:
        return self._int(self.dirs.get("memory", "/nonexistent") + "/memory.usage_in_bytes")

    def memory_peak(self) -> int | None:
        return self._int(self.dirs.get("memory", "/nonexistent") + "/memory.max_usage_in_bytes")

    def reset_peak(self) -> None:
        with contextlib.suppress(OSError):
            _write(self.dirs["memory"] + "/memory.max_usage_in_bytes", "0")

    def oom_kills(self) -> int | None:
        text = self._text(self.dirs.get("memory", "/nonexistent") + "/memory.oom_control")
        if text is None:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return None

    def pids_current(self) -> int | None:
        return self._int(self.dirs.get("pids", "/nonexistent") + "/pids.current")

    def cpu_usage_seconds(self) -> float | None:
        ns = self._int(self.dirs.get("cpuacct", "/nonexistent") + "/cpuacct.usage")
        return None if ns is None else ns / 1e9

    def io_bytes(self) -> tuple[int | None, int | None]:
        text = self._text(self.dirs.get("blkio", "/nonexistent") + "/blkio.throttle.io_service_bytes")
        if text is None:
            return None, None
        rd = wr = 0
        for line in text.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] == "Read":
                rd += int(f[2])
            elif len(f) == 3 and f[1] == "Write":
                wr += int(f[2])
        return rd, wr

    def procs(self) -> list[int]:
        pids: set[int] = set()
        for path in self.procs_files():
            text = _read(path)
            if text:
                pids.update(int(x) for x in text.split())
        return sorted(pids)

    def _kill_all_once(self) -> None:
        for pid in self.procs():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def _rmdirs(self) -> list[str]:
        left = []
        for path in sorted(set(self.dirs.values())):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(path)
        return left


class CgroupV2(CgroupManager):
    """cgroup v2: one directory in the unified hierarchy, controllers enabled by the parent."""

    version = 2
    REQUIRED = ("memory", "pids")
    OPTIONAL = ("cpu", "io")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.path = ""
        self._peak_fd: int | None = None

    @staticmethod
    def _parent() -> str | None:
        own = _own_cgroups().get("")
        if own is None:
            return None
        for mnt, root, fstype, _ in _mountinfo():
            if fstype == "cgroup2" and mnt in (_CG_ROOT, _CG_ROOT + "/unified"):
                path = own[len(root) :] if root != "/" and own.startswith(root) else own
                return os.path.normpath(mnt + "/" + path)
        return None

    @classmethod
    def detect(cls) -> tuple[bool, str]:
        parent = cls._parent()
        if parent is None:
            return False, "cgroup v2: no unified hierarchy mounted"
        controllers = (_read(parent + "/cgroup.controllers") or "").split()
        missing = [c for c in cls.REQUIRED if c not in controllers]
        if missing:
            return False, f"cgroup v2: controller(s) {', '.join(missing)} not available in {parent}"
        if not os.access(parent, os.W_OK):
            why = "not root and no delegation" if os.geteuid() != 0 else "read-only"
            return False, f"unavailable: {why} ({parent} is not writable)"
        enabled = (_read(parent + "/cgroup.subtree_control") or "").split()
        if not all(c in enabled for c in cls.REQUIRED):
            procs = (_read(parent + "/cgroup.procs") or "").split()
            if procs and parent not in (_CG_ROOT, _CG_ROOT + "/unified"):
                return False, (
                    f"cgroup v2: {parent} has processes, so controllers cannot be enabled below it "
                    "(run under a delegated cgroup, e.g. systemd-run --user --scope -p Delegate=yes)"
                )
        return True, "cgroup v2: " + ", ".join(c for c in (*cls.REQUIRED, *cls.OPTIONAL) if c in controllers)

    def create(self, limits: ResourceLimits, *, extra_processes: int = 0) -> None:
        parent = self._parent()
        if parent is None:
            raise ConfinementError("cgroups", "find the cgroup v2 hierarchy", errno.ENOENT)
        controllers = (_read(parent + "/cgroup.controllers") or "").split()
        enabled = (_read(parent + "/cgroup.subtree_control") or "").split()
        wanted = [c for c in (*self.REQUIRED, *self.OPTIONAL) if c in controllers and c not in enabled]
        if wanted:
            try:
                _write(parent + "/cgroup.subtree_control", " ".join("+" + c for c in wanted))
            except OSError as exc:
                raise ConfinementError(
                    "cgroups", f"enable {wanted} in {parent}/cgroup.subtree_control", exc.errno
                ) from exc
        path = os.path.join(parent, f"glsandbox-{self.name}")
        with contextlib.ExitStack() as undo:
            try:
                os.mkdir(path, 0o755)
            except OSError as exc:
                raise ConfinementError("cgroups", f"mkdir({path!r})", exc.errno) from exc
            undo.callback(_rmdir_quiet, path)
            self.path = path
            try:
                if limits.memory_limit_bytes is not None:
                    _write_named(path + "/memory.max", str(limits.memory_limit_bytes))
                    with contextlib.suppress(OSError):
                        _write(path + "/memory.swap.max", "0")
                if limits.max_processes is not None:
                    _write_named(path + "/pids.max", str(limits.max_processes + extra_processes))
                if limits.cpu_percent_limit is not None and os.path.exists(path + "/cpu.max"):
                    quota = max(1000, int(_CPU_PERIOD_US * limits.cpu_percent_limit / 100))
                    _write_named(path + "/cpu.max", f"{quota} {_CPU_PERIOD_US}")
            except OSError as exc:
                raise ConfinementError("cgroups", f"write {exc.filename}", exc.errno) from exc
            undo.pop_all()
        with contextlib.suppress(OSError):
            self._peak_fd = os.open(path + "/memory.peak", os.O_RDWR)
        self.mark_oom_baseline()

    def procs_files(self) -> list[str]:
        return [self.path + "/cgroup.procs"]

    def _paths(self) -> dict[str, str]:
        return {"": self.path} if self.path else {}

    def _set_paths(self, paths: dict[str, str]) -> None:
        self.path = paths.get("", self.path)

    def _membership(self) -> dict[str, str]:
        return {"": "/" + os.path.basename(self.path)} if self.path else {}

    def memory_current(self) -> int | None:
        return self._int(self.path + "/memory.current")

    def memory_peak(self) -> int | None:
        if self._peak_fd is not None:
            with contextlib.suppress(OSError, ValueError):
                return int(os.pread(self._peak_fd, 64, 0).split()[0])
        return self._int(self.path + "/memory.peak")

    def reset_peak(self) -> None:
        if self._peak_fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(self._peak_fd, b"reset\n", 0)

    def _events(self, name: str) -> dict[str, int] | None:
        text = self._text(self.path + "/" + name)
        if text is None:
            return None
        out = {}
        for line in text.splitlines():
            f = line.split()
            if len(f) == 2:
                out[f[0]] = int(f[1])
        return out

    def oom_kills(self) -> int | None:
        ev = self._events("memory.events")
        return None if ev is None else ev.get("oom_kill", 0)

    def pids_current(self) -> int | None:
        return self._int(self.path + "/pids.current")

    def cpu_usage_seconds(self) -> float | None:
        ev = self._events("cpu.stat")
        return None if ev is None or "usage_usec" not in ev else ev["usage_usec"] / 1e6

    def io_bytes(self) -> tuple[int | None, int | None]:
        text = self._text(self.path + "/io.stat")
        if text is None:
            return None, None
        rd = wr = 0
        for line in text.splitlines():
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                if key == "rbytes":
                    rd += int(value)
                elif key == "wbytes":
                    wr += int(value)
        return rd, wr

    def procs(self) -> list[int]:
        text = _read(self.path + "/cgroup.procs") if self.path else None
        return sorted(int(x) for x in text.split()) if text else []

    def _kill_all_once(self) -> None:
        try:
            _write(self.path + "/cgroup.kill", "1")
        except OSError:
            for pid in self.procs():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def _rmdirs(self) -> list[str]:
        if self._peak_fd is not None:
            os.close(self._peak_fd)
            self._peak_fd = None
        if not self.path:
            return []
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return [self.path]
        return []


def _write_named(path: str, value: str) -> None:
    try:
        _write(path, value)
    except OSError as exc:
        exc.filename = path
        raise


def _rmdir_quiet(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _implementations() -> list[type[CgroupManager]]:
    """Detection order: pure v2 first, then v1, then a hybrid's v2 with controllers."""
    mounts = {m: t for m, _, t, _ in _mountinfo()}
    if mounts.get(_CG_ROOT) == "cgroup2":
        return [CgroupV2]
    return [CgroupV1, CgroupV2]


@functools.cache
def available() -> tuple[bool, str]:
    """HOST side: whether cgroups can be used for sandboxes here, and why (not).

    Probed once per process (it sits on every sandbox start); a later
    failure to create a cgroup still falls back to rlimits with its reason.
    """
    reasons = []
    for impl in _implementations():
        ok, why = impl.detect()
        if ok:
            return True, why
        reasons.append(why)
    return False, "; ".join(reasons)


def create_cgroup(limits: ResourceLimits, *, name: str | None = None, extra_processes: int = 0) -> CgroupManager:
    """HOST side: create the sandbox's cgroup with ``limits`` (v2 or v1 by detection).

    ``extra_processes`` is added to ``pids.max`` for the sandbox's helper
    processes. Raises :class:`ConfinementError` when no implementation works.
    """
    name = name or uuid.uuid4().hex[:12]
    reasons = []
    for impl in _implementations():
        ok, why = impl.detect()
        if ok:
            mgr = impl(name)
            mgr.create(limits, extra_processes=extra_processes)
            return mgr
        reasons.append(why)
    raise ConfinementError("cgroups", "create", None, "; ".join(reasons))


def attach_child(section: dict[str, Any] | None, report: dict[str, Any]) -> None:
    """CHILD side: move this process into the sandbox cgroup (every hierarchy).

    A section with ``unavailable`` only copies the host's reason into the report.
    """
    if not section:
        return
    if not section.get("enabled"):
        if section.get("unavailable"):
            report["cgroups"] = section["unavailable"]
        return
    if section.get("attach_by") == "host":
        report["cgroups"] = {"version": section["version"], "name": section["name"], "attached_by": "host"}
        return
    pid = str(os.getpid())
    for path in section["procs"]:
        try:
            _write(path, pid)
        except OSError as exc:
            raise ConfinementError("cgroups", f"write {path}", exc.errno) from exc
    report["cgroups"] = {"version": section["version"], "name": section["name"]}
