"""Outside review 27: what the ``test_outside27_*`` disk-guard reproducers share (no tests here)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, create_config_by_level

from .test_outside5_common import NOBODY, need


def output_sandbox(tmp_path: Path, backend: str, quota: int) -> tuple[Path, OSSandbox]:
    """HOST side: ``(sandbox-output folder, sandbox)``: MODERATE, a read-only project, a ``quota`` disk quota."""
    need(backend)
    os.chmod(tmp_path, 0o755)
    project = tmp_path / "project"
    out = project / "sandbox-output"
    out.mkdir(parents=True)
    if os.geteuid() == 0 and backend != "basic":  # BASIC keeps the host's uid
        os.chown(project, NOBODY, NOBODY)
        os.chown(out, NOBODY, NOBODY)
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType(backend), filesystem=fs)
    cfg = cfg.replace(limits=dataclasses.replace(cfg.limits, disk_quota_bytes=quota))
    return out, OSSandbox(cfg)
