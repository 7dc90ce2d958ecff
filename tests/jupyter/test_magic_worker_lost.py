"""The ``%%sandbox`` notice when a session's worker was lost says how (outside review).

The notice said "was stopped (it exited)" for a worker killed from outside between cells
(``kill -9``, the OOM killer), and "stopped (SandboxMemoryError)" after a cell killed at its
memory limit. Real IPython in a subprocess, a real sandbox, a real SIGKILL from the host.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import os, signal, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "glsandbox_kernel")
shell.run_cell("%%sandbox\nx = 1\n")
session = shell.magics_manager.registry["SandboxMagics"].registry.sessions["default"].sandbox.session
for pid in session.host_pids():
    os.kill(pid, signal.SIGKILL)
deadline = time.monotonic() + 30
while session.alive and time.monotonic() < deadline:
    time.sleep(0.05)
shell.run_cell("%%sandbox\nprint('after kill')\n")
shell.run_cell("%%sandbox --memory 100M\nb = bytearray(400 * 2**20)\n")
shell.run_cell("%%sandbox --memory 100M\nprint('after limit')\n")
"""


def test_notice_names_the_signal_and_the_limit() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False)
    out = res.stdout + res.stderr
    assert "after kill" in out and "after limit" in out, out[-3000:]
    assert "was stopped" not in out and "it exited" not in out, out[-3000:]
    assert "the worker of sandbox session 'default' was killed by signal SIGKILL;" in out, out[-3000:]
    assert (
        "was killed in the previous cell (SandboxMemoryError: the worker was killed for exceeding the memory limit "
        "of 100.0 MiB" in out
    ), out[-3000:]
