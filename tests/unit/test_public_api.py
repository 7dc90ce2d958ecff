"""Pins the public API (httpx's test_exported_members habit)."""

from __future__ import annotations

import glsandbox_kernel

EXPECTED = {
    "BackendUnavailableError",
    "CellResult",
    "FilesystemConfig",
    "IsolationType",
    "NetworkConfig",
    "OSSandbox",
    "OSSandboxConfig",
    "ResourceLimits",
    "SandboxConfigError",
    "SandboxCrashedError",
    "SandboxError",
    "SandboxEscapeError",
    "SandboxMemoryError",
    "SandboxMetrics",
    "SandboxMode",
    "SandboxRemoteError",
    "SandboxSecurityError",
    "SandboxTimeoutError",
    "SandboxViolationError",
    "SecurityLevel",
    "WhitelistConfig",
    "__version__",
    "create_config_by_level",
    "execute_lenient",
    "execute_moderate",
    "execute_strict",
    "sandboxed",
}


def test_exported_members() -> None:
    assert set(glsandbox_kernel.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(glsandbox_kernel, name), name


def test_seed_names_and_members() -> None:
    from glsandbox_kernel import IsolationType, SandboxMemoryError, SandboxMetrics, SandboxMode, SecurityLevel

    assert [m.name for m in SecurityLevel] == ["STRICT", "MODERATE", "LENIENT"]
    assert [m.name for m in IsolationType] == ["BASIC", "NAMESPACE", "CONTAINER", "GVISOR", "CHROOT", "VM"]
    assert [m.name for m in SandboxMode] == ["ENFORCING", "PERMISSIVE"]
    assert issubclass(SandboxMemoryError, MemoryError)
    fields = set(SandboxMetrics.__dataclass_fields__)
    assert fields >= {
        "cpu_time_used",
        "memory_peak_bytes",
        "memory_current_bytes",
        "disk_read_bytes",
        "disk_write_bytes",
        "network_bytes_sent",
        "network_bytes_received",
        "syscalls_made",
        "violations_detected",
        "escape_attempts",
        "execution_time",
        "setup_time",
        "cleanup_time",
    }


def test_core_import_does_not_pull_optional_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys, glsandbox_kernel; bad = [m for m in ('docker', 'ipywidgets', 'matplotlib', 'IPython', "
        "'nbconvert', 'zmq') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
