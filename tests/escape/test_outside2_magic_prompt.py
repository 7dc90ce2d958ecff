"""Outside review (3rd): ``%%sandbox`` in terminal IPython writes the sandbox's input() prompt raw to the terminal.

Attack: the sandboxed cell calls ``input('\\x1b]52;c;SGVsbG8=\\x07name? ')``.
``magics/magic.py`` (``on_input``) hands the prompt to the host's
``input()`` / ``getpass.getpass()`` as it came, so the host terminal gets
the escape sequence: OSC 52 sets the user's clipboard (a command the user
then pastes), other sequences retitle or rewrite the screen. The earlier fix
(``terminal_text.printable``) covers ``glsandbox run``/``exec`` messages, not this
path. Measured: the bytes ``ESC ] 52 ; c ;`` reached the host's stdout.

Judged from the host: no ESC byte from the sandbox's prompt reaches the
host terminal.

Fix (suggested): ``magics/magic.py`` (``on_input``): pass the prompt through
``terminal_text.printable`` when stdout is a terminal (or always: a prompt
is one line of text).
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "glsandbox_kernel")
shell.run_cell("%%sandbox strict\nx = input('\\x1b]52;c;SGVsbG8=\\x07name? ')\nprint(repr(x))")
"""


def test_the_sandbox_prompt_reaches_the_terminal_without_escapes() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], input=b"bob\n", capture_output=True, timeout=120, check=False)
    assert b"'bob'" in res.stdout, (res.stdout[-400:], res.stderr[-800:])
    assert b"\x1b]52" not in res.stdout, f"the sandbox's OSC 52 prompt reached the terminal: {res.stdout[:80]!r}"
