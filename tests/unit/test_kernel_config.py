"""The kernel app's config resolution: what the config file and the kernelspec argv give the kernel (host side).

Real ``SandboxKernelApp`` in a fresh interpreter (its command line parsed, its
config file read from ``$JUPYTER_CONFIG_DIR``); no kernel is started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_RESOLVE = """
import json, sys
from glsandbox_kernel.kernel.app import SandboxKernelApp
app = SandboxKernelApp()
app.parse_command_line(sys.argv[1:])
app.load_config_file()
print(json.dumps({k: str(v) for k, v in app.kernel_section(app.config).items()}))
"""


def _resolve(tmp_path: Path, config: dict[str, object], argv: list[str]) -> tuple[dict[str, str], str]:
    (tmp_path / "glsandbox_kernel_config.json").write_text(json.dumps(config))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", _RESOLVE, *argv], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_an_option_set_by_argv_and_file_warns_with_both_values(tmp_path: Path) -> None:
    config = {
        "SandboxKernel": {"level": "strict", "timeout": 30},
        "SandboxKernelApp": {"SandboxKernel": {"memory": "1G"}},
    }
    argv = ["--SandboxKernel.level=moderate", "--SandboxKernel.timeout=30", "--SandboxKernel.memory=2G"]
    options, log = _resolve(tmp_path, config, argv)
    assert options == {"level": "moderate", "timeout": "30", "memory": "1G"}  # parent-scoped file beats flat argv
    assert "level is 'moderate' on the kernel's command line" in log and "'strict' in glsandbox_kernel_config" in log
    assert "memory is '2G'" in log and "'1G' applies" in log
    assert "timeout" not in log  # the same value both ways: nothing to say


def test_a_parent_scoped_file_level_is_what_the_kernel_reads(tmp_path: Path) -> None:
    options, log = _resolve(tmp_path, {"SandboxKernelApp": {"SandboxKernel": {"level": "strict"}}}, [])
    assert options == {"level": "strict"} and "WARNING" not in log
