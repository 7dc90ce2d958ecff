"""Configuration: enums, frozen keyword-only dataclasses, presets (host side).

Who calls: users build an :class:`OSSandboxConfig` (or take a preset from
:func:`create_config_by_level`); the session and backends read it. Nothing
here touches processes. Every dataclass validates itself on construction and
raises :class:`SandboxConfigError` naming the field and the allowed range.
Defaults are the safe choice: leaving a field unset never opens anything up.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from typing import Any

from .exceptions import SandboxConfigError

MiB = 1024 * 1024
GiB = 1024 * MiB


class SecurityLevel(enum.Enum):
    """Preset strength; see the table in the README."""

    STRICT = "strict"
    MODERATE = "moderate"
    LENIENT = "lenient"


class IsolationType(enum.Enum):
    """How the worker is confined; each value is served by one backend module."""

    BASIC = "basic"
    NAMESPACE = "namespace"
    CONTAINER = "container"
    GVISOR = "gvisor"
    CHROOT = "chroot"
    VM = "vm"


class SandboxMode(enum.Enum):
    """ENFORCING fails the call on a violation; PERMISSIVE records and goes on.

    In both modes the forbidden operation itself is denied.
    """

    ENFORCING = "enforcing"
    PERMISSIVE = "permissive"


def _check_positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SandboxConfigError(name, f"must be a number or None, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise SandboxConfigError(name, f"must be {bound} or None, got {value!r}")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB]?)?\s*$")


def parse_size(text: str | int) -> int:
    """Parse ``"200M"``, ``"1.5G"``, ``"512k"`` or a plain byte count into bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(text)
    if not m:
        raise SandboxConfigError("size", f"cannot parse {text!r}; use e.g. 200M, 1G, 512k")
    number = float(m.group(1))
    unit = m.group(2).upper()
    factor = {"": 1, "K": 1024, "M": MiB, "G": GiB, "T": 1024 * GiB}[unit]
    return int(number * factor)


@dataclass(frozen=True, kw_only=True)
class ResourceLimits:
    """Limits enforced from outside the worker (rlimits, cgroups, host clock).

    ``None`` means "no limit of this kind"; presets set all of them.
    """

    memory_limit_bytes: int | None = 512 * MiB
    cpu_time_limit_seconds: float | None = 60.0
    cpu_percent_limit: float | None = None
    max_open_files: int | None = 256
    max_processes: int | None = 64
    max_file_size_bytes: int | None = 256 * MiB
    disk_quota_bytes: int | None = 256 * MiB
    network_bandwidth_bytes_per_s: int | None = None

    def __post_init__(self) -> None:
        _check_positive("memory_limit_bytes", self.memory_limit_bytes)
        if self.memory_limit_bytes is not None and self.memory_limit_bytes < 16 * MiB:
            raise SandboxConfigError("memory_limit_bytes", "must be at least 16 MiB (the interpreter needs it)")
        _check_positive("cpu_time_limit_seconds", self.cpu_time_limit_seconds)
        _check_positive("cpu_percent_limit", self.cpu_percent_limit)
        if self.cpu_percent_limit is not None and self.cpu_percent_limit > 100 * 1024:
            raise SandboxConfigError("cpu_percent_limit", "must be in (0, 102400] percent")
        _check_positive("max_open_files", self.max_open_files)
        if self.max_open_files is not None and self.max_open_files < 16:
            raise SandboxConfigError("max_open_files", "must be at least 16")
        _check_positive("max_processes", self.max_processes)
        _check_positive("max_file_size_bytes", self.max_file_size_bytes)
        _check_positive("disk_quota_bytes", self.disk_quota_bytes)
        _check_positive("network_bandwidth_bytes_per_s", self.network_bandwidth_bytes_per_s)


_HOSTPORT_RE = re.compile(r"^(\*|[A-Za-z0-9*._-]+|\[[0-9A-Fa-f:]+\]):(\*|\d{1,5})$")


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Network policy.

    - ``allow_network=False`` (default): no network at all, loopback only.
    - ``allow_network=True`` with ``allowed_hosts``: only those ``host:port``
      patterns, through the host-side proxy.
    - ``allow_network=True`` with no ``allowed_hosts``: any host through the
      proxy. Link-local and cloud metadata addresses are blocked always.
    """

    allow_network: bool = False
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.allowed_hosts, tuple):
            object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        for pattern in self.allowed_hosts:
            if not isinstance(pattern, str) or not _HOSTPORT_RE.match(pattern):
                raise SandboxConfigError(
                    "allowed_hosts", f"{pattern!r} is not a HOST:PORT pattern (e.g. api.example.org:443)"
                )
            port = pattern.rsplit(":", 1)[1]
            if port != "*" and not 0 < int(port) < 65536:
                raise SandboxConfigError("allowed_hosts", f"port in {pattern!r} must be 1-65535")
        if self.allowed_hosts and not self.allow_network:
            raise SandboxConfigError(
                "allowed_hosts", "needs allow_network=True (an allowlist with the network off is a mistake)"
            )

    @property
    def mode(self) -> str:
        """``"none"``, ``"allowlist"`` or ``"any"``."""
        if not self.allow_network:
            return "none"
        return "allowlist" if self.allowed_hosts else "any"


DEFAULT_BLOCKED_PATHS: tuple[str, ...] = (
    "/root",
    "/home",
    "/etc/shadow",
    "/etc/gshadow",
    "/var/run/docker.sock",
    "/run/docker.sock",
)


#: Names (shell patterns, matched against every file and folder name inside a
#: visible folder) that the sandbox never sees, at every level: credentials,
#: keys, version-control internals, Jupyter runtime and connection files.
DEFAULT_MASKED_NAMES: tuple[str, ...] = (
    ".env",
    ".env.*",
    ".git",
    "*.pem",
    "*.key",
    "id_*",
    ".ssh",
    ".aws",
    ".netrc",
    ".pypirc",
    ".gnupg",
    ".docker",
    ".kube",
    "kernel-*.json",
    "jpserver-*",
    "nbserver-*",
    "jupyter_runtime",
)

#: How the sandbox sees the project folder: not at all, read-only, read-write.
PROJECT_ACCESS = ("none", "read", "write")


@dataclass(frozen=True, kw_only=True)
class FilesystemConfig:
    """What of the host filesystem the worker sees.

    ``root`` is the root filesystem directory for the CHROOT backend.

    ``project_dir`` is the analyst's folder (the notebook's directory for the
    kernel): it appears at its own absolute path and is the working directory.
    ``project_access`` says how: ``"none"`` (hidden), ``"read"`` or
    ``"write"``; ``None`` lets the level decide (STRICT none, MODERATE read,
    LENIENT write). ``project_writable=True`` is the older spelling of
    ``project_access="write"``. ``output_dir`` (relative to the project) is
    the one writable folder of a read-only project; ``None`` turns it off.
    ``masked_names``: names hidden inside every visible folder (see
    :data:`DEFAULT_MASKED_NAMES`).
    """

    root: str | None = None
    project_dir: str | None = None
    project_access: str | None = None
    project_writable: bool = False
    output_dir: str | None = "sandbox-output"
    readonly_paths: tuple[str, ...] = ()
    writable_paths: tuple[str, ...] = ()
    blocked_paths: tuple[str, ...] = DEFAULT_BLOCKED_PATHS
    masked_names: tuple[str, ...] = DEFAULT_MASKED_NAMES

    def __post_init__(self) -> None:
        for name in ("readonly_paths", "writable_paths", "blocked_paths", "masked_names"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise SandboxConfigError(name, "must be a sequence of strings, not one string")
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        for name in ("readonly_paths", "writable_paths", "blocked_paths"):
            for p in getattr(self, name):
                if not isinstance(p, str) or not p.startswith("/"):
                    raise SandboxConfigError(name, f"{p!r} must be an absolute path")
        for pattern in self.masked_names:
            if not isinstance(pattern, str) or not pattern or "/" in pattern:
                raise SandboxConfigError("masked_names", f"{pattern!r} must be a file name pattern (no '/')")
        for name in ("root", "project_dir"):
            p = getattr(self, name)
            if p is not None and (not isinstance(p, str) or not p.startswith("/")):
                raise SandboxConfigError(name, f"{p!r} must be an absolute path or None")
        if self.project_access is not None and self.project_access not in PROJECT_ACCESS:
            raise SandboxConfigError("project_access", f"{self.project_access!r} is not one of none, read, write")
        if self.project_writable and self.project_access not in (None, "write"):
            raise SandboxConfigError("project_writable", f"contradicts project_access={self.project_access!r}")
        out = self.output_dir
        if out is not None:
            parts = out.split("/") if isinstance(out, str) else []
            if not isinstance(out, str) or not out or out.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise SandboxConfigError("output_dir", f"{out!r} must be a relative path inside the project folder")
        if self.project_dir is not None:
            from .project import project_dir_problem

            problem = project_dir_problem(self.project_dir)
            if problem is not None:
                raise SandboxConfigError("project_dir", problem)

    def access_for(self, level: SecurityLevel) -> str:
        """The project folder's access at ``level``: ``"none"``, ``"read"`` or ``"write"``."""
        if self.project_dir is None:
            return "none"
        if self.project_access is not None:
            return self.project_access
        if self.project_writable:
            return "write"
        return {SecurityLevel.STRICT: "none", SecurityLevel.MODERATE: "read"}.get(level, "write")


DEFAULT_ENV_ALLOWLIST: tuple[str, ...] = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


@dataclass(frozen=True, kw_only=True)
class WhitelistConfig:
    """Explicit allowances on top of the level's preset.

    ``allowed_env_vars``: host variables copied into the worker (all others are
    scrubbed). ``allowed_executables``: programs that may be executed even
    where the level denies new programs. ``env``: extra variables set in the
    worker (values given here, not taken from the host).
    """

    allowed_env_vars: tuple[str, ...] = DEFAULT_ENV_ALLOWLIST
    allowed_executables: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in ("allowed_env_vars", "allowed_executables"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.env, dict):
            object.__setattr__(self, "env", tuple(sorted(self.env.items())))
        for item in self.env:
            if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                raise SandboxConfigError("env", "must be a mapping or pairs of str")


@dataclass(frozen=True, kw_only=True)
class OSSandboxConfig:
    """Everything one sandbox session needs; defaults equal the MODERATE preset.

    ``isolation_type=None`` picks the strongest backend that runs here without
    a daemon. ``allow_new_programs=None`` lets the level decide (STRICT denies
    execve of new programs).
    """

    security_level: SecurityLevel = SecurityLevel.MODERATE
    isolation_type: IsolationType | None = None
    sandbox_mode: SandboxMode = SandboxMode.ENFORCING
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    filesystem: FilesystemConfig = field(default_factory=FilesystemConfig)
    whitelist: WhitelistConfig = field(default_factory=WhitelistConfig)
    execution_timeout: float | None = 60.0
    interrupt_grace_seconds: float = 2.0
    enable_audit: bool = True
    audit_log_path: str | None = None
    audit_key_path: str | None = None
    enable_metrics: bool = True
    detect_escape_attempts: bool = True
    fallback_to_basic: bool = False
    container_image: str | None = None
    allow_new_programs: bool | None = None
    max_frame_bytes: int = 64 * MiB

    def __post_init__(self) -> None:
        for name, typ in (
            ("security_level", SecurityLevel),
            ("sandbox_mode", SandboxMode),
        ):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    object.__setattr__(self, name, typ(value.lower()))
                except ValueError:
                    allowed = ", ".join(m.value for m in typ)
                    raise SandboxConfigError(name, f"{value!r} is not one of {allowed}") from None
            elif not isinstance(value, typ):
                raise SandboxConfigError(name, f"must be a {typ.__name__}")
        if isinstance(self.isolation_type, str):
            try:
                object.__setattr__(self, "isolation_type", IsolationType(self.isolation_type.lower()))
            except ValueError:
                allowed = ", ".join(m.value for m in IsolationType)
                raise SandboxConfigError("isolation_type", f"{self.isolation_type!r} is not one of {allowed}") from None
        elif self.isolation_type is not None and not isinstance(self.isolation_type, IsolationType):
            raise SandboxConfigError("isolation_type", "must be an IsolationType or None")
        for name, typ2 in (
            ("limits", ResourceLimits),
            ("network", NetworkConfig),
            ("filesystem", FilesystemConfig),
            ("whitelist", WhitelistConfig),
        ):
            if not isinstance(getattr(self, name), typ2):
                raise SandboxConfigError(name, f"must be a {typ2.__name__}")
        _check_positive("execution_timeout", self.execution_timeout)
        _check_positive("interrupt_grace_seconds", self.interrupt_grace_seconds, allow_zero=True)
        if not 1024 <= self.max_frame_bytes <= 1024 * MiB:
            raise SandboxConfigError("max_frame_bytes", "must be in [1 KiB, 1 GiB]")

    @property
    def project_access(self) -> str:
        """How the sandbox sees ``filesystem.project_dir``: ``"none"``, ``"read"`` or ``"write"``."""
        return self.filesystem.access_for(self.security_level)

    @property
    def new_programs_allowed(self) -> bool:
        """Whether execve of new programs is allowed (STRICT denies it)."""
        if self.allow_new_programs is not None:
            return self.allow_new_programs
        return self.security_level is not SecurityLevel.STRICT

    def replace(self, **changes: Any) -> OSSandboxConfig:
        """A copy with ``changes`` applied (the config itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, used for provenance hashes and audit records."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


#: The STRICT and LENIENT presets (MODERATE is every field's default), as in the README's table:
#: mode, memory, CPU seconds (also the wall-clock timeout), open files, processes,
#: largest file (also the disk quota), network allowed.
_PRESETS: dict[SecurityLevel, tuple[SandboxMode, int, float, int, int, int, bool]] = {
    SecurityLevel.STRICT: (SandboxMode.ENFORCING, 256 * MiB, 30.0, 128, 16, 64 * MiB, False),
    SecurityLevel.LENIENT: (SandboxMode.PERMISSIVE, 1 * GiB, 300.0, 1024, 256, 1 * GiB, True),
}


def create_config_by_level(level: SecurityLevel | str, **overrides: Any) -> OSSandboxConfig:
    """The documented preset for ``level`` (see the README's table), with overrides."""
    if isinstance(level, str):
        try:
            level = SecurityLevel(level.lower())
        except ValueError:
            raise SandboxConfigError("security_level", f"{level!r} is not one of strict, moderate, lenient") from None
    if level not in _PRESETS:
        base = OSSandboxConfig(security_level=level)
    else:
        mode, memory, seconds, files, processes, file_bytes, network = _PRESETS[level]
        base = OSSandboxConfig(
            security_level=level,
            sandbox_mode=mode,
            limits=ResourceLimits(
                memory_limit_bytes=memory,
                cpu_time_limit_seconds=seconds,
                max_open_files=files,
                max_processes=processes,
                max_file_size_bytes=file_bytes,
                disk_quota_bytes=file_bytes,
            ),
            network=NetworkConfig(allow_network=network),
            execution_timeout=seconds,
        )
    return base.replace(**overrides) if overrides else base
