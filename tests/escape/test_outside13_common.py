"""Review 14 helpers: run a host script as uid 65534 with a temporary folder of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from ..conftest import ROOT, as_user


@contextmanager
def nobody_tmp(prefix: str) -> Iterator[str]:
    """A world-writable temporary folder (the host's ``TMPDIR`` for uid 65534), removed after."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.chmod(tmp, 0o777)
    try:
        yield tmp
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", tmp], check=False)
        subprocess.run(["rm", "-rf", tmp], check=False)


def nobody_env(tmp: str) -> dict[str, str]:
    """The environment of a host script run as uid 65534: this checkout importable, ``TMPDIR`` = ``tmp``."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/tmp",
        "TMPDIR": tmp,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(ROOT),
    }


def run_as_nobody(script: str, *args: str, tmp: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -c script args`` as uid 65534 (this checkout importable, ``TMPDIR`` = ``tmp``)."""
    return subprocess.run(
        as_user([sys.executable, "-c", script, *args]),
        cwd=ROOT,
        env=nobody_env(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def memory_result(proc: subprocess.CompletedProcess[str]) -> tuple[int, int, str]:
    """The ``RESULT limit used outcome`` line a memory reproducer's host script printed."""
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, limit, used, out = lines[0].split(" ", 3)
    return int(limit), int(used), out
