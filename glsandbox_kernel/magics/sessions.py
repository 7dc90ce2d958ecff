"""Named, persistent sandbox sessions of the ``%%sandbox`` magic (host side).

A session is identified by its name (``--name``, default ``default``) and
defined by its settings (level, isolation, limits, network, monitor, audit).
A cell with the same name and the same settings reuses the session and its
state; different settings close the old session and start a new one, with a
notice that the state is lost. Who calls: :mod:`glsandbox_kernel.magics.magic`.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from typing import Any

from ..config import NetworkConfig, OSSandboxConfig, create_config_by_level
from ..terminal_text import printable

DEFAULT_NAME = "default"


@dataclasses.dataclass(frozen=True)
class SessionSettings:
    """What defines a session; ``None`` means "the level's preset"."""

    level: str = "moderate"
    isolation: str | None = None
    timeout: float | None = None
    memory: int | None = None
    cpu_time: float | None = None
    network: str | None = None
    monitor: bool = True
    audit: str | None = None
    #: the project folder (``--project``; default: the current directory) and ``--ro`` paths.
    project: str | None = None
    readonly: tuple[str, ...] = ()

    def config(self) -> OSSandboxConfig:
        """The OSSandboxConfig for these settings (raises SandboxConfigError for bad values)."""
        cfg = create_config_by_level(self.level)
        overrides: dict[str, Any] = {}
        if self.isolation:
            overrides["isolation_type"] = self.isolation
        if self.timeout is not None:
            overrides["execution_timeout"] = self.timeout
        limits: dict[str, Any] = {}
        if self.memory is not None:
            limits["memory_limit_bytes"] = self.memory
        if self.cpu_time is not None:
            limits["cpu_time_limit_seconds"] = self.cpu_time
        if limits:
            overrides["limits"] = dataclasses.replace(cfg.limits, **limits)
        if self.network is not None:
            overrides["network"] = network_config(self.network)
        if not self.monitor:
            overrides["enable_metrics"] = False
        if self.audit:
            overrides["audit_log_path"] = self.audit
        if self.project or self.readonly:
            overrides["filesystem"] = dataclasses.replace(
                cfg.filesystem, project_dir=self.project, readonly_paths=self.readonly
            )
        return cfg.replace(**overrides) if overrides else cfg

    def changes_from(self, old: SessionSettings) -> list[str]:
        """``["level strict -> moderate", ...]`` for the notice when a session is replaced."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(old, f.name), getattr(self, f.name)
            if a != b:
                out.append(f"{f.name} {_show(a)} -> {_show(b)}")
        return out

    def describe(self) -> str:
        parts = [self.level, self.isolation or "default backend"]
        if self.timeout is not None:
            parts.append(f"timeout {self.timeout:g} s")
        if self.memory is not None:
            parts.append(f"memory {self.memory // (1024 * 1024)} MiB")
        if self.cpu_time is not None:
            parts.append(f"cpu-time {self.cpu_time:g} s")
        if self.network is not None:
            parts.append(f"network {self.network}")
        if not self.monitor:
            parts.append("no monitor")
        if self.audit:
            parts.append(f"audit {self.audit}")
        return ", ".join(parts)


def _show(value: Any) -> str:
    return "preset" if value is None else str(value)


def network_config(spec: str) -> NetworkConfig:
    """``none``, ``any`` or ``HOST:PORT,HOST:PORT`` as a NetworkConfig (SandboxConfigError if bad)."""
    text = spec.strip()
    if text.lower() == "none":
        return NetworkConfig(allow_network=False)
    if text.lower() == "any":
        return NetworkConfig(allow_network=True)
    hosts = tuple(h.strip() for h in text.split(",") if h.strip())
    return NetworkConfig(allow_network=True, allowed_hosts=hosts)


class NamedSession:
    """One named session: its settings, its OSSandbox and a cell counter."""

    def __init__(self, name: str, settings: SessionSettings) -> None:
        from ..sandbox import OSSandbox
        from .host_path import guard_project

        self.name = name
        self.settings = settings
        #: printed once by the magic: why a writable project is shown read-only
        self.config, self.path_notice = guard_project(settings.config())
        self.sandbox = OSSandbox(self.config)
        self.cells = 0
        self.shell_ready = False
        from ..notebook.evidence import AuditTrail

        #: which of the session's audit records were already shown in a cell's audit output
        self.audit_trail = AuditTrail()

    @property
    def alive(self) -> bool:
        return bool(self.sandbox.session.alive)

    def ensure_shell(self) -> None:
        """Start the worker's IPython shell (``--in`` needs its namespace before the first cell)."""
        if not self.shell_ready or not self.alive:
            self.sandbox.request({"type": "is_complete", "code": ""}, "is_complete_reply", timeout=30.0)
            self.shell_ready = True

    def close(self) -> None:
        self.sandbox.close()


def worker_end(status: int | None) -> str:
    """``"killed by signal SIGKILL"``: how a session's worker ended between cells, from its exit status
    (:attr:`~glsandbox_kernel.session.Session.exit_status`), for the magic's notice (host side)."""
    if status is None:
        return "ended"
    if status < 0:
        try:
            return f"killed by signal {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"ended (exit status {status})"


def lost_in_cell(error_name: str | None, error_value: str | None) -> str:
    """``"killed in the previous cell (SandboxMemoryError: ... memory limit of 100.0 MiB ...)"``: the host's
    verdict on a cell whose worker died, first clause only, for the next cell's notice (host side)."""
    what = printable(f"{error_name or 'the worker died'}: {(error_value or '').split(';')[0]}", one_line=True)
    return f"killed in the previous cell ({what.rstrip(': ')[:300]})"


class SessionRegistry:
    """The magic's sessions by name; closes them all at exit (thread-safe)."""

    def __init__(self) -> None:
        self.sessions: dict[str, NamedSession] = {}
        self._lock = threading.Lock()

    def get(self, name: str, settings: SessionSettings, *, new: bool = False) -> tuple[NamedSession, str | None]:
        """The session ``name`` with ``settings`` and a notice when an old one was replaced."""
        with self._lock:
            old = self.sessions.get(name)
            if old is not None and not new and old.settings == settings:
                return old, None
            # The new session first: a setting that fails here (an unavailable backend...)
            # leaves the existing session and its state untouched.
            session = NamedSession(name, settings)
            notice = None
            if old is not None:
                del self.sessions[name]
                old.close()
                if new:
                    notice = f"glsandbox: --new: closed sandbox session {name!r}; its state is lost."
                else:
                    changed = "; ".join(settings.changes_from(old.settings))
                    notice = (
                        f"glsandbox: the settings of sandbox session {name!r} changed ({changed}); "
                        "closed it and started a new one, so its earlier state is lost."
                    )
            self.sessions[name] = session
            return session, notice

    def names(self, name: str | None) -> list[str]:
        with self._lock:
            if name is None:
                return list(self.sessions)
            return [name] if name in self.sessions else []

    def stop(self, name: str) -> bool:
        with self._lock:
            session = self.sessions.pop(name, None)
        if session is None:
            return False
        session.close()
        return True

    def close_all(self) -> None:
        """Close every session (atexit, unload, kernel shutdown)."""
        with self._lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            try:
                session.close()
            except Exception:  # noqa: BLE001 - closing the others matters more
                pass
