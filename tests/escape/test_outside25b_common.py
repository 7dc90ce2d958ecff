"""Outside review 25b: what the ``test_outside25b_*`` reproducers share (no tests here).

``result_of(proc)``: the JSON after ``RESULT `` that a host script printed. ``as_root(script, *args)``: run a
host script as root (this checkout importable), skipping when not root. ``moderate(project)``: a MODERATE
namespace config whose project is ``project`` (read-only, ``sandbox-output/`` writable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel import IsolationType, create_config_by_level
from glsandbox_kernel.config import FilesystemConfig, OSSandboxConfig

from ..conftest import ROOT


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``RESULT {json}`` line of a host script's stdout, decoded (fails with its output otherwise)."""
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    got: dict[str, Any] = json.loads(lines[0][len("RESULT ") :])
    return got


def as_root(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -c script args`` as root in the checkout (skips the test when not root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=240)


def moderate(project: Path) -> OSSandboxConfig:
    """MODERATE on NAMESPACE with ``project`` as the project folder (read-only; its output folder writable)."""
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    return create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE, filesystem=fs)
