"""Outside review (10th): a sandboxed script's own output writes raw escape sequences to the operator's terminal.

Attack: the script run by ``glsandbox exec`` prints ``ESC]52;c;<base64>BEL``
(OSC 52: "set the clipboard"), ``ESC]0;...BEL`` (window title) and ``ESC[2J``
(clear screen). ``outputs.relay_streams``, which every function call's
stdout/stderr frames go through (``exec``, ``OSSandbox.execute``,
``@sandboxed``), writes the worker's text to the host's ``sys.stdout`` /
``sys.stderr`` as it came; the magic's ``display.show_output`` does the same
for a ``%%sandbox`` cell in terminal IPython. Review 1 made the CLIs' own
lines of sandbox text ``printable()`` (``test_outside_terminal``: "OSC 52 puts
text of its choice on the operator's clipboard in terminals that allow it"),
and the magic escapes an ``input()`` prompt for the same reason, but the
script's stream text still reaches the terminal untouched.

Measured from the host: run under a pseudo-terminal, the bytes the terminal
received hold ``\\x1b]52;c;cHduZWQ=\\x07`` and ``\\x1b]0;pwned\\x07`` exactly as
the sandbox wrote them. Severity: low-medium (clipboard planting in terminals
that honour OSC 52: xterm with allowWindowOps, kitty, WezTerm, iTerm2, tmux
set-clipboard; a pasted command then runs on the host unsandboxed; screen
clearing and retitling hide what ran).

The magic's fix of review 3 does not hold for the cell's own output: in
terminal IPython, ``%%sandbox strict`` with ``print('A\\x1b]52;c;cHduZWQ=\\x07B')``
puts the same bytes on the host's stdout (``test_outside2_magic_prompt``
escapes only the ``input()`` prompt).

Judged from the host: a terminal that ``glsandbox exec`` (or the magic) writes a sandboxed
script's output to receives no OSC (``ESC ]``), DCS (``ESC P``), APC or PM
string; newlines, tabs, ``\\r`` and colours (SGR) may stay.

Fix (suggested): ``outputs.relay_streams`` (and ``magics.display.show_output``
when the host stream is a TTY) pass stream text through a terminal filter that
drops or escapes OSC/DCS/APC/PM/SOS strings and CSI sequences other than SGR.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(180)]

SCRIPT = (
    "import sys\n"
    "print('A\\x1b]52;c;cHduZWQ=\\x07B\\x1b[2J')\n"
    "sys.stderr.write('E\\x1b]0;pwned\\x07\\n')\n"
    "print('done')\n"
)


def test_exec_output_carries_no_terminal_strings(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    script = project / "s.py"
    script.write_text(SCRIPT)
    glsandbox = Path(sys.executable).with_name("glsandbox")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(glsandbox), "exec", "--isolation", "namespace", str(script)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        cwd=str(tmp_path),
    )
    os.close(follower)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        rc = proc.wait(timeout=60)
    assert rc == 0 and b"done" in seen, (rc, seen[-2000:])
    for marker in (b"\x1b]", b"\x1bP", b"\x1b_", b"\x1b^"):
        assert marker not in seen, (
            f"the sandboxed script wrote {marker!r}... to the operator's terminal: {seen[:300]!r}"
        )


MAGIC = r"""
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "glsandbox_kernel")
shell.run_cell("%%sandbox strict\nprint('A\\x1b]52;c;cHduZWQ=\\x07B')\nprint('done')\n")
"""


def test_magic_cell_output_carries_no_terminal_strings() -> None:
    res = subprocess.run([sys.executable, "-c", MAGIC], capture_output=True, timeout=150, check=False)
    assert b"done" in res.stdout, (res.stdout[-400:], res.stderr[-800:])
    assert b"\x1b]52" not in res.stdout, f"the sandboxed cell's OSC 52 reached the terminal: {res.stdout[:80]!r}"
