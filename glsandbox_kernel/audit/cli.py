"""``glsandbox audit verify|show`` (host side).

The main ``glsandbox`` CLI calls :func:`add_audit_parser` to register the
subcommands and :func:`run_audit` to run them. Files other than JSONL audit
logs (notebooks, attestations) are verified by whoever registered their
suffix with :func:`register_file_verifier` (the main CLI does, so this
package never imports the notebook layer). Exit status: 0 the chain is
intact (or ``show`` printed it), 1 the chain is broken, 2 a usage error
(missing file, unreadable key ...), reported as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..terminal_text import printable
from ._open_sessions import report_open_sessions
from .cluster import verify_cluster_file
from .keys import Verifier, public_verifier_from_bytes, read_key_file, verifier_from_bytes
from .log import load_key
from .verify import VerifyResult, _parse_lines, _Unparsable, verify_file

#: ``suffix -> verify(args) -> exit status`` for files that are not JSONL audit logs.
_FILE_VERIFIERS: dict[str, Callable[[argparse.Namespace], int]] = {}


def register_file_verifier(suffix: str, verify: Callable[[argparse.Namespace], int]) -> None:
    """Let ``glsandbox audit verify FILE`` hand files ending in ``suffix`` to ``verify`` (main CLI)."""
    _FILE_VERIFIERS[suffix] = verify


def load_verifier(args: argparse.Namespace) -> Verifier | None:
    """The verifier from ``--pubkey FILE`` (Ed25519), ``--key FILE`` or ``$GLSANDBOX_AUDIT_KEY``; None without.

    ``OSError`` / ``ValueError`` for an unreadable or unusable key file.
    """
    pubkey = getattr(args, "pubkey", None)
    if pubkey:
        return public_verifier_from_bytes(read_key_file(pubkey))
    path = getattr(args, "key", None)
    material = load_key(path) if path else load_key()
    return verifier_from_bytes(material) if material is not None else None


_PROG = "glsandbox audit"
_MAX_PROBLEMS_SHOWN = 20
# C0 controls are escaped by json.dumps; DEL and C1 controls (e.g. U+009B, an
# 8-bit CSI) are not, and must not reach a terminal raw.
_JSON_UNSAFE = {code: f"\\u{code:04x}" for code in (0x7F, *range(0x80, 0xA0))}


def add_audit_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``audit verify FILE`` and ``audit show FILE`` to a subparsers object.

    Called by the main ``glsandbox`` CLI while building its parser. Sets
    ``func=run_audit`` as the parser default.
    """
    parser = subparsers.add_parser(
        "audit",
        help="verify or show a tamper-evident audit log",
        description="Verify or show a glsandbox audit log (JSON Lines, hash-chained).",
    )
    commands = parser.add_subparsers(dest="audit_command", metavar="COMMAND")
    commands.required = True

    verify = commands.add_parser(
        "verify",
        help="check the hash chain (and signatures) of an audit log or notebook",
        description=(
            "Check every record's hash, its link to the previous record and, with a "
            "key, its signature. Records cut off the END of a file cannot be noticed "
            "without --expected-head or --expected-count (printed by a previous run)."
        ),
    )
    verify.add_argument("file", metavar="FILE", help="audit log (.jsonl) or notebook (.ipynb)")
    verify.add_argument(
        "--key",
        metavar="FILE",
        help="file holding the HMAC key (default: $GLSANDBOX_AUDIT_KEY, if set)",
    )
    verify.add_argument(
        "--pubkey",
        metavar="PUBLIC",
        help="Ed25519 public key file (glsandbox keygen writes NAME.pub): verify without being able to sign",
    )
    verify.add_argument(
        "--strict",
        action="store_true",
        help="notebooks: demand one clean top-to-bottom run (no re-executed or out-of-order cells); "
        "JSONL logs: fail on a session without session_end; attestations: fail on a failed strict verdict",
    )
    verify.add_argument(
        "--expected-head",
        metavar="HASH",
        help="record_hash the chain must still contain (detects truncation at the end)",
    )
    verify.add_argument(
        "--expected-count",
        metavar="N",
        type=int,
        help="minimum number of records (detects truncation at the end)",
    )

    show = commands.add_parser(
        "show",
        help="print an audit log as a table",
        description="Print an audit log as a compact table, or its raw JSON lines.",
    )
    show.add_argument("file", metavar="FILE", help="audit log (.jsonl)")
    show.add_argument("--json", action="store_true", help="print the raw JSON lines")

    parser.set_defaults(func=run_audit)
    return parser


def run_audit(args: argparse.Namespace) -> int:
    """Run ``glsandbox audit ...`` for parsed ``args``; return the exit status."""
    command = _COMMANDS.get(getattr(args, "audit_command", None) or "")
    if command is None:
        _error("expected a subcommand: verify or show")
        return 2
    try:
        return command(args)
    except BrokenPipeError:  # e.g. `glsandbox audit show log | head`
        _silence_stdout()
        return 0


def _verify(args: argparse.Namespace) -> int:
    path: str = args.file
    for suffix, verify in _FILE_VERIFIERS.items():
        if path.endswith(suffix):
            return int(verify(args))
    try:
        key = load_verifier(args)
    except OSError as exc:
        _error(f"cannot read key file {getattr(args, 'pubkey', None) or args.key}: {exc.strerror or exc}")
        return 2
    except ValueError as exc:
        _error(str(exc))
        return 2
    try:
        result = verify_file(
            path,
            key,
            expected_head=getattr(args, "expected_head", None),
            expected_count=getattr(args, "expected_count", None),
        )
    except OSError as exc:
        _error(f"cannot read {path}: {exc.strerror or exc}")
        return 2
    _check_cluster_runs(path, key, result)
    report_open_sessions(path, result, bool(getattr(args, "strict", False)))  # no session_end: a warning

    if result.ok:
        checked = ", signatures verified" if key is not None else ""
        print(f"OK: {path}: {result.count} record(s), chain intact{checked}")
        if result.head is not None:
            print(f"head: {result.head} (pass as --expected-head later to detect truncation)")
    else:
        where = f"record {result.first_bad}"
        if result.first_bad is not None and result.first_bad <= result.count:
            where += f" (line {result.first_bad})"
        print(f"FAILED: {path}: audit chain broken at {where}; {result.count} record(s) read")
        for problem in result.problems[:_MAX_PROBLEMS_SHOWN]:
            print(f"  {printable(problem, one_line=True)}")  # problems quote the file's text
        hidden = len(result.problems) - _MAX_PROBLEMS_SHOWN
        if hidden > 0:
            print(f"  ... and {hidden} more problem(s)")
    for note in result.notes:
        print(f"note: {printable(note, one_line=True)}")
    return 0 if result.ok else 1


def _check_cluster_runs(path: str, key: Verifier | None, result: VerifyResult) -> None:
    """Add the checks of cluster runs (sessions' own chains, run manifests) to ``result``.

    A run file written by :mod:`glsandbox_kernel.distributed` is one chain the
    verifier above checks; this re-checks the records it carries
    (:mod:`.cluster`). No-op for files without cluster runs.
    """
    problems, notes = verify_cluster_file(path, key)
    if problems:
        result.problems.extend(problems)
        result.ok = False
        if result.first_bad is None:
            result.first_bad = result.count + 1
    result.notes.extend(notes)


def _show(args: argparse.Namespace) -> int:
    path: str = args.file
    if path.endswith(".ipynb"):
        _error("'audit show' reads a JSONL audit log; for a notebook use 'glsandbox audit verify'")
        return 2
    try:
        if args.json:
            _show_json(path)
            return 0
        damaged = _show_table(path)
    except OSError as exc:
        _error(f"cannot read {path}: {exc.strerror or exc}")
        return 2
    if damaged:
        _error(f"{damaged} damaged line(s); run 'glsandbox audit verify {path}'")
    return 0


def _show_json(path: str) -> None:
    with open(path, "rb") as handle:
        for raw in handle:
            text = raw.rstrip(b"\n").decode("utf-8", errors="replace")
            try:
                json.loads(text)
            except ValueError:
                text = printable(text, one_line=True)  # damaged: escape every control character
            else:
                text = text.translate(_JSON_UNSAFE)  # same JSON value, terminal-safe
            print(text)


_HEADER = (
    "SEQ",
    "TIME (UTC)",
    "EVENT",
    "SESSION",
    "ISOLATION",
    "LEVEL",
    "EXEC",
    "VIOL",
)
_ROW = "{:>5}  {:<20}  {:<17}  {:<8}  {:<9}  {:<8}  {:>9}  {:>4}"


def _show_table(path: str) -> int:
    damaged = 0
    print(_ROW.format(*_HEADER))
    for lineno, record in enumerate(_parse_lines(path), start=1):
        if isinstance(record, _Unparsable) or not isinstance(record, dict):
            damaged += 1
            reason = record.reason if isinstance(record, _Unparsable) else "not an object"
            print(f"{'!':>5}  line {lineno}: {reason}")
            continue
        print(_ROW.format(*_row(record)))
    return damaged


def _row(record: dict[str, Any]) -> tuple[str, ...]:
    violations = record.get("violations")
    execution_time = record.get("execution_time")
    return (
        _cell(record.get("seq"), 5),
        _iso(record.get("timestamp")),
        _cell(record.get("event_type"), 17),
        printable(record.get("session_id") or "-", one_line=True)[:8],  # a prefix, unmarked
        _cell(record.get("isolation_type"), 9),
        _cell(record.get("security_level"), 8),
        f"{execution_time:.3f}s"
        if isinstance(execution_time, (int, float)) and not isinstance(execution_time, bool)
        else "-",
        str(len(violations)) if isinstance(violations, list) else "-",
    )


def _iso(timestamp: Any) -> str:
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        return "-"
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "?"


def _cell(value: Any, width: int) -> str:
    text = "-" if value is None else printable(value, one_line=True)
    return text if len(text) <= width else text[: width - 1] + "~"


def _error(message: str) -> None:
    print(f"{_PROG}: error: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "verify": _verify,
    "show": _show,
}
