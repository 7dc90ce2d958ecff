"""cgroup v2: one directory in the unified hierarchy, controllers enabled by the parent. HOST side."""

from __future__ import annotations

import contextlib
import errno
import os

from ... import procfs
from ...config import ResourceLimits
from .._common import ConfinementError
from .base import (
    CG_ROOT,
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


class CgroupV2(Cgroup):
    """cgroup v2; ``path`` is this cgroup's directory. The peak is reset through the fd it is read from."""

    version = 2
    REQUIRED = ("memory", "pids")
    OPTIONAL = ("cpu", "io")

    def __init__(self, name: str, *, path: str = "", owned: bool = True) -> None:
        super().__init__(name, owned=owned)
        self.path = path

    @staticmethod
    def unified_dir(pid: int | str = "self", *, standard_only: bool = True) -> str | None:
        """The directory of ``pid``'s v2 cgroup. ``standard_only``: only a hierarchy mounted
        at /sys/fs/cgroup or /sys/fs/cgroup/unified (where we create ours)."""
        own = own_cgroups(pid).get("")
        if own is None:
            return None
        for m in procfs.mountinfo():
            if m.fstype == "cgroup2" and (not standard_only or m.mount_point in (CG_ROOT, CG_ROOT + "/unified")):
                return join_mount(m.mount_point, m.root, own)
        return None

    @classmethod
    def detect(cls) -> tuple[bool, str]:
        parent = cls.unified_dir()
        if parent is None:
            return False, "cgroup v2: no unified hierarchy mounted"
        controllers = (read_text(parent + "/cgroup.controllers") or "").split()
        missing = [c for c in cls.REQUIRED if c not in controllers]
        if missing:
            return False, f"cgroup v2: controller(s) {', '.join(missing)} not available in {parent}"
        if not os.access(parent, os.W_OK):
            why = "not root and no delegation" if os.geteuid() != 0 else "read-only"
            return False, f"unavailable: {why} ({parent} is not writable)"
        enabled = (read_text(parent + "/cgroup.subtree_control") or "").split()
        if not all(c in enabled for c in cls.REQUIRED):
            procs = (read_text(parent + "/cgroup.procs") or "").split()
            if procs and parent not in (CG_ROOT, CG_ROOT + "/unified"):
                return False, (
                    f"cgroup v2: {parent} has processes, so controllers cannot be enabled below it "
                    "(run under a delegated cgroup, e.g. systemd-run --user --scope -p Delegate=yes)"
                )
        return True, "cgroup v2: " + ", ".join(c for c in (*cls.REQUIRED, *cls.OPTIONAL) if c in controllers)

    @classmethod
    def parent_dirs(cls) -> list[str]:
        parent = cls.unified_dir()
        return [parent] if parent is not None else []

    @classmethod
    def cpu_quota_missing(cls) -> str:
        parent = cls.unified_dir()
        if parent is not None and "cpu" in (read_text(parent + "/cgroup.controllers") or "").split():
            return ""
        return (
            f"cgroup v2: the cpu controller is not available in {parent} (its parent's cgroup.subtree_control "
            "does not enable +cpu), so no CPU quota can be set"
        )

    def create(self, limits: ResourceLimits, *, extra_processes: int = 0) -> None:
        self._require_owned("create")
        parent = self.unified_dir()
        if parent is None:
            raise ConfinementError("cgroups", "find the cgroup v2 hierarchy", errno.ENOENT)
        controllers = (read_text(parent + "/cgroup.controllers") or "").split()
        enabled = (read_text(parent + "/cgroup.subtree_control") or "").split()
        wanted = [c for c in (*self.REQUIRED, *self.OPTIONAL) if c in controllers and c not in enabled]
        if wanted:
            try:
                write(parent + "/cgroup.subtree_control", " ".join("+" + c for c in wanted))
            except OSError as exc:
                raise ConfinementError(
                    "cgroups", f"enable {wanted} in {parent}/cgroup.subtree_control", exc.errno
                ) from exc
        path = os.path.join(parent, dir_name(self.name))
        with contextlib.ExitStack() as undo:
            try:
                os.mkdir(path, 0o755)
            except OSError as exc:
                raise ConfinementError("cgroups", f"mkdir({path!r})", exc.errno) from exc
            undo.callback(rmdir_quiet, path)
            self.path = path
            try:
                if limits.memory_limit_bytes is not None:
                    write_named(path + "/memory.max", str(limits.memory_limit_bytes))
                    with contextlib.suppress(OSError):
                        write(path + "/memory.swap.max", "0")
                if limits.max_processes is not None:
                    write_named(path + "/pids.max", str(limits.max_processes + extra_processes))
                if limits.cpu_percent_limit is not None:
                    if not os.path.exists(path + "/cpu.max"):
                        raise ConfinementError("cgroups", "set cpu_percent_limit", None, self.cpu_quota_missing())
                    quota = max(1000, int(CPU_PERIOD_US * limits.cpu_percent_limit / 100))
                    write_named(path + "/cpu.max", f"{quota} {CPU_PERIOD_US}")
            except OSError as exc:
                raise ConfinementError("cgroups", f"write {exc.filename}", exc.errno) from exc
            undo.pop_all()
        self._fd(path + "/memory.peak")  # opened now: the peak window is this fd's
        self.mark_oom_baseline()

    def exists(self) -> bool:
        return bool(self.path) and os.path.isdir(self.path)

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
        return self._int(self.path + "/memory.peak")

    def _write_peak_reset(self) -> None:
        # Since Linux 6.12 writing to memory.peak resets the peak seen through
        # that open file, so the file is kept open read-write and read through it.
        self._poke(self.path + "/memory.peak", b"reset\n")

    def oom_kills(self) -> int | None:
        ev = parse_keyed(self._text(self.path + "/memory.events"))
        return None if ev is None else ev.get("oom_kill", 0)

    def pids_current(self) -> int | None:
        return self._int(self.path + "/pids.current")

    def pids_peak(self) -> int | None:
        return self._int(self.path + "/pids.peak")

    def cpu_usage_seconds(self) -> float | None:
        ev = parse_keyed(self._text(self.path + "/cpu.stat"))
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
        text = read_text(self.path + "/cgroup.procs") if self.path else None
        return sorted(int(x) for x in text.split()) if text else []

    def _kill_all_once(self) -> None:
        try:
            write(self.path + "/cgroup.kill", "1")
        except OSError:
            self._kill_each()

    def _rmdirs(self) -> list[str]:
        if not self.path:
            return []
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return [self.path]
        return []
