"""Outside review: ``%%sandbox`` in terminal IPython printed the sandbox's text raw.

Attack: a sandboxed cell shows text holding terminal control sequences through the three ways
IPython prints a cell's outcome itself: ``display({'text/plain': ...}, raw=True)``, the value of
its last expression (a ``__repr__``), and an exception's message (the traceback). Stream output
was already filtered (``terminal_text.stream_text``), these were not: ``ESC]52;c;...BEL`` (OSC 52,
sets the user's clipboard) and ``ESC[2J`` (clears the screen) reached the host terminal.

Judged from the host: the bytes of a real terminal IPython (``TerminalInteractiveShell``) hold no
OSC 52 or screen clear from the sandbox; each shows escaped, as stream text does.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
from IPython.terminal.interactiveshell import TerminalInteractiveShell
shell = TerminalInteractiveShell.instance(colors="nocolor")
shell.run_line_magic("load_ext", "glsandbox_kernel")
shell.run_cell("%%sandbox\nfrom IPython.display import display\n"
               "display({'text/plain': 'D\\x1b]52;c;RElTUA==\\x07\\x1b[2J'}, raw=True)\n")
shell.run_cell("%%sandbox\nclass R:\n    def __repr__(self): return 'R\\x1b]52;c;UkVQUg==\\x07\\x1b[2J'\nR()\n")
shell.run_cell("%%sandbox\nraise ValueError('E\\x1b]52;c;RVJS\\x07\\x1b[2J')\n")
"""


def test_display_result_and_traceback_reach_the_terminal_escaped() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, timeout=300, check=False)
    out = res.stdout + res.stderr
    assert b"\x1b]52" not in out and b"\x1b[2J" not in out, out[-1500:]
    for shown in (b"D\\x1b]52;c;RElTUA==\\x07\\x1b[2J", b"R\\x1b]52;c;UkVQUg==\\x07\\x1b[2J", b"ValueError"):
        assert shown in out, (shown, out[-1500:])
