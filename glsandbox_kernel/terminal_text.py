"""Sandbox-derived text made safe to print on the operator's terminal (host side).

An error message, traceback or result string from the sandbox may hold
terminal control sequences: ``\\r`` + ``ESC[2K`` erase a line and print a
fake "ok" over it, ``ESC]52;c;...BEL`` (OSC 52) sets the clipboard,
``ESC]0;...`` retitles the window. :func:`printable` escapes every C0/C1
control character and DEL (as ``repr`` does: ``\\x1b``) except newline and
tab, the bidirectional-override characters that reorder what is shown
(``\\u202e``), and lone surrogates (which would fail to encode).

:func:`stream_text` is the same filter for a sandboxed program's own
stdout/stderr, which is meant to be seen as it was written: it also keeps
``\\r`` (progress bars) and complete SGR sequences (``ESC[1;31m``, colours and
bold, nothing else), and escapes everything else ``printable`` does: OSC,
DCS, APC, PM, SOS and every other CSI (cursor moves, ``ESC[2J``) lose their
``ESC`` (or 8-bit introducer) and show as text. It applies whether or not the
host stream is a terminal: a pipe or a log file ends on a terminal too
(``cat``, ``less -R``), and the stream text stays readable either way.
Each chunk is filtered alone, in linear time: a raw ``ESC`` is written only
as the start of an SGR sequence complete in that chunk, so the terminal is
back in its ground state after every chunk and a sequence split over two
chunks cannot combine (an SGR split that way shows escaped, a cosmetic loss).

Who calls: the CLIs, on every sandbox-derived string they print:
``glsandbox run`` (:mod:`glsandbox_kernel.notebook.run`, progress and summary),
``glsandbox run --cluster`` (:mod:`glsandbox_kernel.notebook.cluster`),
``glsandbox exec`` (:mod:`glsandbox_kernel.cli`, the error, traceback and result);
with ``one_line``: ``glsandbox audit verify|show`` (:mod:`glsandbox_kernel.audit.cli`, and the
notebook and attestation verifiers it hands files to), ``glsandbox report`` and ``attest``;
:func:`stream_text`: :func:`glsandbox_kernel.outputs.relay_streams` (function
calls: ``glsandbox exec``, ``OSSandbox.execute``, ``@sandboxed``) and the
``%%sandbox`` magic's cell output (:mod:`glsandbox_kernel.magics.display`).
"""

from __future__ import annotations

import re

#: C0 but newline/tab, DEL, C1, bidi controls, lone surrogates: escaped by both filters
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[{_CONTROLS}]")
#: stream text: a complete SGR sequence is kept (group 1 unset), ``\r`` too, the rest escaped
_STREAM_UNSAFE = re.compile(f"\x1b\\[[0-9;:]{{0,64}}m|\r|([{_CONTROLS}])")


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _escape(match: re.Match[str]) -> str:
    return _escaped(match.group())


def _escape_stream(match: re.Match[str]) -> str:
    char = match.group(1)
    return match.group() if char is None else _escaped(char)  # SGR and ``\r`` kept as written


def as_text(value: object, limit: int | None = 10_000) -> str:
    """``value`` as text, never raising: a str as it is, anything else its ``str`` cut to ``limit``
    characters (None: not cut), or ``<typename>`` when that fails (an int past Python's digit limit, a hostile
    ``__str__``). The one conversion for sandbox-derived fields on the host: reply fields
    (:mod:`glsandbox_kernel.results`), output frames and input prompts (:mod:`glsandbox_kernel.outputs`),
    and what :func:`printable` prints."""
    if isinstance(value, str):
        return value
    try:
        return str(value)[:limit]
    except Exception:  # noqa: BLE001 - describe, never fail
        return f"<{type(value).__name__}>"


def safe_text(text: str, notes: list[str] | None = None) -> str:
    """``text`` as UTF-8-encodable text: each lone surrogate becomes its escape, e.g. ``\\ud800`` (named in ``notes``).

    Before any sanitizer or serializer sees sandbox text (nh3 and the JSON packer raise on a lone
    surrogate). Who calls: the kernel's relay (:mod:`glsandbox_kernel.kernel.relay`) and
    :func:`glsandbox_kernel.active_content.clean_bundle`, host side.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        why = "text with lone surrogates (escaped)"
        if notes is not None and why not in notes:
            notes.append(why)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def printable(text: object, *, one_line: bool = False) -> str:
    """``text`` (or its :func:`as_text`) with control characters escaped; newlines and tabs kept.

    ``one_line``: every character ``str.isprintable`` refuses is escaped, newline and tab too (a
    line of a verifier's report, a table cell: what the text holds cannot start a line of its own)."""
    s = text if isinstance(text, str) else as_text(text, None)
    if s.isprintable():
        return s
    if one_line:
        return "".join(ch if ch.isprintable() else _escaped(ch) for ch in s)
    return _UNSAFE.sub(_escape, s)


def stream_text(text: str) -> str:
    """A chunk of sandboxed stdout/stderr as the host's stream may show it (see the module doc)."""
    if text.isprintable():
        return text
    return _STREAM_UNSAFE.sub(_escape_stream, text)
