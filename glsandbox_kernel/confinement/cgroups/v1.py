"""cgroup v1: one directory per controller hierarchy (memory, pids, cpu, cpuacct, blkio). HOST side."""

from __future__ import annotations

import contextlib
import os

from ... import procfs
from ...config import ResourceLimits
from .._common import ConfinementError
from .base import (
    CPU_PERIOD_US,
    Cgroup,
    dir_name,
    join_mount,
    own_cgroups,
    parse_keyed,
    read_text,
    rmdir_quiet,
    write,
    write_named,
)

_NONE = "/nonexistent"


class CgroupV1(Cgroup):
    """cgroup v1; ``dirs`` maps each controller to this cgroup's directory in its hierarchy."""

    version = 1
    REQUIRED = ("memory", "pids")
    OPTIONAL = ("cpu", "cpuacct", "blkio")

    def __init__(self, name: str, *, dirs: dict[str, str] | None = None, owned: bool = True) -> None:
        super().__init__(name, owned=owned)
        self.dirs: dict[str, str] = dict(dirs or {})

    @staticmethod
    def hierarchies(pid: int | str = "self") -> dict[str, str]:
        """Controller -> directory of ``pid``'s cgroup in that hierarchy (this process by default)."""
        own = own_cgroups(pid)
        out: dict[str, str] = {}
        for m in procfs.mountinfo():
            if m.fstype != "cgroup":
                continue
            for ctrl in m.super_options.split(","):
                if ctrl in CgroupV1.REQUIRED + CgroupV1.OPTIONAL and ctrl in own:
                    out[ctrl] = join_mount(m.mount_point, m.root, own[ctrl])
        return out

    @classmethod
    def detect(cls) -> tuple[bool, str]:
        h = cls.hierarchies()
        missing = [c for c in cls.REQUIRED if c not in h]
        if missing:
            return False, f"cgroup v1: controller(s) {', '.join(missing)} not mounted"
        for ctrl in cls.REQUIRED:
            if not os.access(h[ctrl], os.W_OK):
                why = "not root and no delegation" if os.geteuid() != 0 else "read-only"
                return False, f"unavailable: {why} ({h[ctrl]} is not writable)"
        extra = [c for c in cls.OPTIONAL if c in h]
        return True, "cgroup v1: " + ", ".join((*cls.REQUIRED, *extra))

    @classmethod
    def parent_dirs(cls) -> list[str]:
        return sorted(set(cls.hierarchies().values()))

    @classmethod
    def cpu_quota_missing(cls) -> str:
        if "cpu" in cls.hierarchies():
            return ""
        return "cgroup v1: the cpu controller is not mounted, so no CPU quota can be set"

    def create(self, limits: ResourceLimits, *, extra_processes: int = 0) -> None:
        self._require_owned("create")
        h = self.hierarchies()
        with contextlib.ExitStack() as undo:
            made: dict[str, str] = {}
            for ctrl, parent in h.items():
                path = os.path.join(parent, dir_name(self.name))
                if path not in made.values():
                    try:
                        os.mkdir(path, 0o755)
                    except OSError as exc:
                        raise ConfinementError("cgroups", f"mkdir({path!r})", exc.errno) from exc
                    undo.callback(rmdir_quiet, path)
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
            write_named(mem + "/memory.limit_in_bytes", str(limits.memory_limit_bytes))
            if os.path.exists(mem + "/memory.memsw.limit_in_bytes"):
                with contextlib.suppress(OSError):
                    write(mem + "/memory.memsw.limit_in_bytes", str(limits.memory_limit_bytes))
            with contextlib.suppress(OSError):
                write(mem + "/memory.swappiness", "0")
        if limits.max_processes is not None:
            write_named(self.dirs["pids"] + "/pids.max", str(limits.max_processes + extra_processes))
        if limits.cpu_percent_limit is not None:
            if "cpu" not in self.dirs:
                raise ConfinementError("cgroups", "set cpu_percent_limit", None, self.cpu_quota_missing())
            quota = max(1000, int(CPU_PERIOD_US * limits.cpu_percent_limit / 100))
            write_named(self.dirs["cpu"] + "/cpu.cfs_period_us", str(CPU_PERIOD_US))
            write_named(self.dirs["cpu"] + "/cpu.cfs_quota_us", str(quota))

    def _f(self, controller: str, name: str) -> str:
        return self.dirs.get(controller, _NONE) + "/" + name

    def exists(self) -> bool:
        return os.path.isdir(self.dirs.get("memory", _NONE))

    def procs_files(self) -> list[str]:
        return sorted({d + "/cgroup.procs" for d in self.dirs.values()})

    def _paths(self) -> dict[str, str]:
        return dict(self.dirs)

    def _set_paths(self, paths: dict[str, str]) -> None:
        self.dirs = paths

    def _membership(self) -> dict[str, str]:
        return {ctrl: "/" + os.path.basename(d) for ctrl, d in self.dirs.items()}

    def memory_current(self) -> int | None:
        return self._int(self._f("memory", "memory.usage_in_bytes"))

    def memory_peak(self) -> int | None:
        return self._int(self._f("memory", "memory.max_usage_in_bytes"))

    def _write_peak_reset(self) -> None:
        self._poke(self._f("memory", "memory.max_usage_in_bytes"), b"0")

    def oom_kills(self) -> int | None:
        return (parse_keyed(self._text(self._f("memory", "memory.oom_control"))) or {}).get("oom_kill")

    def pids_current(self) -> int | None:
        return self._int(self._f("pids", "pids.current"))

    def pids_peak(self) -> int | None:
        return self._int(self._f("pids", "pids.peak"))

    def cpu_usage_seconds(self) -> float | None:
        ns = self._int(self._f("cpuacct", "cpuacct.usage"))
        return None if ns is None else ns / 1e9

    def io_bytes(self) -> tuple[int | None, int | None]:
        """(read, None): v1's blkio sees the reads a task issues, but buffered writes reach the disk
        through the flusher threads of the root cgroup, so a sandbox that wrote and fsynced 32 MiB
        reads 0 written. Not measured, so None (the charter: never a measured-looking 0)."""
        text = self._text(self._f("blkio", "blkio.throttle.io_service_bytes"))
        if text is None:
            return None, None
        rd = 0
        for line in text.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] == "Read":
                rd += int(f[2])
        return rd, None

    def procs(self) -> list[int]:
        pids: set[int] = set()
        for path in self.procs_files():
            text = read_text(path)
            if text:
                pids.update(int(x) for x in text.split())
        return sorted(pids)

    def _kill_all_once(self) -> None:
        self._kill_each()

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
