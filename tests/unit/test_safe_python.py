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


def test_an_empty_pythonpath_entry_and_a_sitecustomize_in_the_folder_change_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text("raise SystemExit('planted sitecustomize imported')\n")
    (folder / "platform.py").write_text("raise SystemExit('planted platform.py imported')\n")
    lib = tmp_path / "lib"
    lib.mkdir()  # an absolute PYTHONPATH entry outside the working directory: still honoured
    (lib / "probe_main.py").write_text("import platform\nprint('probe', platform.system())\n")
    src = folder / "src"
    src.mkdir()  # one below it (a src layout the sandbox may write): dropped, ahead of lib or not
    (src / "probe_main.py").write_text("raise SystemExit('planted src/probe_main.py imported')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f":{src}:{lib}:relative"}
    done = subprocess.run(
        module_argv(sys.executable, "probe_main"), cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "probe Linux"
    plain = subprocess.run([sys.executable, "-c", "pass"], cwd=folder, env=env, capture_output=True, text=True)
    assert "planted sitecustomize imported" in plain.stderr  # what the bootstrap stops
