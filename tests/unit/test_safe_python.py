"""``module_argv``: a host Python process started in a folder the sandbox wrote imports nothing from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from glsandbox_kernel.safe_python import module_argv


def test_a_module_planted_in_the_working_directory_is_not_imported(tmp_path: Path) -> None:
    (tmp_path / "platform.py").write_text("raise SystemExit('planted platform.py imported')\n")
    planted = tmp_path / "calendar"
    planted.mkdir()
    (planted / "__init__.py").write_text("raise SystemExit('planted calendar imported')\n")
    (planted / "__main__.py").write_text("raise SystemExit('planted calendar imported')\n")
    argv = [*module_argv(sys.executable, "calendar"), "2026", "12"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "December 2026" in done.stdout
    # the same with plain -m does import the planted package: the test would see the attack
    plain = subprocess.run([sys.executable, "-m", "calendar"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "planted calendar imported" in plain.stderr
