"""The glsandbox command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

GLSANDBOX = [sys.executable, "-m", "glsandbox_kernel.cli"]


def run(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GLSANDBOX, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_doctor_reports_every_backend_with_a_reason() -> None:
    proc = run("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["backends"]) >= {"basic", "vm"}
    assert report["backends"]["basic"]["available"] is True
    # The VM row names the acceleration it would use (or what is missing); kvm is "yes" only when it runs guests.
    vm = report["backends"]["vm"]
    assert (
        ("TCG" in vm["reason"] or "KVM" in vm["reason"])
        if vm["available"]
        else "build-vm-image" in vm["reason"] + vm["hint"]
    )
    if not report["features"]["kvm"]["available"]:
        assert "KVM:" not in vm["reason"]
    assert all(info["reason"] for info in report["backends"].values())
    text = run("doctor")
    assert text.returncode == 0 and "Default backend:" in text.stdout


def test_exec_prints_output_exits_with_status_and_writes_audit(tmp_path: Path) -> None:
    script = tmp_path / "calc.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            print("co2e", 2.68 * float(sys.argv[1]))
            print("warn", file=sys.stderr)
            sys.exit(3)
            """
        )
    )
    audit = tmp_path / "audit.jsonl"
    proc = run("exec", "--isolation", "basic", "--audit", str(audit), str(script), "10")
    assert proc.returncode == 3, proc.stderr
    assert "co2e 26.8" in proc.stdout and "warn" in proc.stderr
    events = [json.loads(line)["event_type"] for line in audit.read_text().splitlines()]
    assert events[0] == "session_start" and "execution_success" in events and events[-1] == "session_end"
    assert run("audit", "verify", str(audit)).returncode == 0
    shown = run("audit", "show", str(audit))
    assert shown.returncode == 0 and "session_start" in shown.stdout


def test_exec_script_error_prints_sandbox_traceback(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text("def f():\n    raise ValueError('no factor')\nf()\n")
    proc = run("exec", "--isolation", "basic", str(script))
    assert proc.returncode == 1
    assert "ValueError" in proc.stderr and "no factor" in proc.stderr and "line 2" in proc.stderr


def test_exec_timeout_and_memory_options(tmp_path: Path) -> None:
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(10)\n")
    proc = run("exec", "--isolation", "basic", "--timeout", "1", str(slow))
    assert proc.returncode == 125 and "SandboxTimeoutError" in proc.stderr
    big = tmp_path / "big.py"
    big.write_text("x = b'1' * (300 * 1024 * 1024)\n")  # resident: every page written
    proc = run("exec", "--isolation", "basic", "--memory", "100M", str(big))
    assert proc.returncode != 0 and "memory limit" in proc.stderr


def test_bad_arguments_exit_2_without_traceback(tmp_path: Path) -> None:
    for args in (
        ("exec", "--level", "extreme", "x.py"),
        ("nonsense",),
        ("exec",),
        ("exec", "--memory", "lots", str(tmp_path / "x.py")),
    ):
        if args[-1].endswith("x.py") and "--memory" in args:
            (tmp_path / "x.py").write_text("pass\n")
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
    missing = run("exec", os.path.join(str(tmp_path), "missing.py"))
    assert missing.returncode == 2 and "no such script" in missing.stderr
    assert run("audit", "verify", str(tmp_path / "none.jsonl")).returncode == 2


def test_removed_working_folder_or_cwd_is_one_line_exit_2(tmp_path: Path) -> None:
    """A shell left in a deleted folder (a cleaned-up /tmp dir): one line and status 2, not
    a FileNotFoundError traceback from os.path.abspath (exec) or from the kernel start (run)."""
    nb = tmp_path / "a.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    gone = tmp_path / "gone"
    for args in (("exec", "x.py"), ("run", str(nb)), ("report", str(nb))):
        gone.mkdir()
        script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
        proc = subprocess.run(
            ["sh", "-c", script, "sh", str(gone), *GLSANDBOX, *args], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "current folder no longer exists" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = run("run", "--cwd", str(tmp_path / "missing"), str(nb))
    assert proc.returncode == 2 and "--cwd" in proc.stderr and "no such folder" in proc.stderr, proc.stderr
    assert "glsandbox run:" not in proc.stdout, proc.stdout  # refused before a kernel started


def test_doctor_says_each_hint_once(tmp_path: Path) -> None:
    """An empty VM image folder: the VM row's reason ends with how to build the image; its hint,
    which also says how, gave that step a second time on the same line (outside review)."""
    env = {**os.environ, "GLSANDBOX_VM_IMAGE": str(tmp_path)}
    text = subprocess.run([*GLSANDBOX, "doctor"], capture_output=True, text=True, timeout=120, env=env)
    assert text.returncode == 0, text.stderr
    row = next(line for line in text.stdout.splitlines() if line.split()[1:2] == ["vm"])
    assert "missing vmlinuz" in row and row.count("build-vm-image") == 1, row
    assert row.count("GLSANDBOX_VM_IMAGE") == 1, row
    for line in text.stdout.splitlines():
        if "[hint: " in line:
            reason, _, hint = line.partition("  [hint: ")
            steps = hint.rstrip("]").split(", then ")
            assert len(set(steps)) == len(steps) and not any(step in reason for step in steps), line
