"""Sessions of a JSONL audit log that never ended (host side).

A log whose last records were cut off is a valid, shorter chain (see
:mod:`.verify`): without ``--expected-head`` the cut cannot be proven. One
sign remains in the file itself: a session that wrote ``session_start``
but no ``session_end`` either is still running, died with its host, or lost
its tail. ``glsandbox audit verify`` names each such session in a warning
line; with ``--strict`` it is a problem (exit status 1).

Who calls: :func:`glsandbox_kernel.audit.cli._verify` (JSONL files).
"""

from __future__ import annotations

import os

from ..terminal_text import printable
from .verify import VerifyResult, _parse_lines


def open_sessions(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """``(session_id, records)`` of every session in ``path`` with a session_start and no session_end."""
    started: dict[str, int] = {}
    ended: set[str] = set()
    for obj in _parse_lines(path):
        if not isinstance(obj, dict):
            continue
        session = str(obj.get("session_id"))
        event = obj.get("event_type")
        if event == "session_start":
            started.setdefault(session, 0)
        elif event == "session_end":
            ended.add(session)
        if session in started:
            started[session] += 1
    return [(s, n) for s, n in started.items() if s not in ended]


def report_open_sessions(path: str, result: VerifyResult, strict: bool) -> None:
    """One warning line (printed now, before the verdict) per session without session_end; with
    ``strict`` each is a problem of ``result`` instead."""
    for session, count in open_sessions(path):
        text = (
            f"session {session} has no session_end record ({count} record(s), its session_start included): "
            "it is still running, its host died, or the end of the log was cut off "
            "(pass --expected-head to prove nothing is missing)"
        )
        if strict:
            _fail(result, f"--strict: {text}")
        else:
            print(f"warning: {printable(text, one_line=True)}")  # the session id is the file's text


def _fail(result: VerifyResult, problem: str) -> None:
    result.problems.append(problem)
    result.ok = False
    if result.first_bad is None:
        result.first_bad = result.count + 1  # what is missing comes after the last record
