"""Sandbox-derived text made safe to print on the operator's terminal (host side).

An error message, traceback or result string from the sandbox may hold
terminal control sequences: ``\\r`` + ``ESC[2K`` erase a line and print a
fake "ok" over it, ``ESC]52;c;...BEL`` (OSC 52) sets the clipboard,
``ESC]0;...`` retitles the window. :func:`printable` escapes every C0/C1
control character and DEL (as ``repr`` does: ``\\x1b``) except newline and
tab, the bidirectional-override characters that reorder what is shown
(``\\u202e``), and lone surrogates (which would fail to encode).

Who calls: the CLIs, on every sandbox-derived string they print:
``glsandbox run`` (:mod:`glsandbox_kernel.notebook.run`, progress and summary),
``glsandbox run --cluster`` (:mod:`glsandbox_kernel.notebook.cluster`),
``glsandbox exec`` (:mod:`glsandbox_kernel.cli`, the error, traceback and result).
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` (or its ``str``) with control characters escaped; newlines and tabs kept."""
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():
        return s
    s = _UNSAFE.sub(_escape, s)
    return s.encode("utf-8", "backslashreplace").decode("utf-8")
