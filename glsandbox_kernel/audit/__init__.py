"""Tamper-evident audit log: records, hash chain, sinks, verification (host side).

The session, kernel and magics hold an :class:`AuditLog` and call
:meth:`AuditLog.emit` for every event; ``glsandbox audit verify`` checks the
resulting JSONL file with :func:`verify_file`. The CLI's names
(:func:`add_audit_parser`, :func:`run_audit`) load :mod:`.cli` (argparse) on
first use only: a kernel's start imports this package, not its CLI.
"""

import typing as _typing

from .log import AuditLog as AuditLog
from .log import load_key as load_key
from .records import GENESIS_HASH as GENESIS_HASH
from .records import EventType as EventType
from .records import canonical_json as canonical_json
from .records import compute_record_hash as compute_record_hash
from .records import provenance_hash as provenance_hash
from .records import sign as sign
from .sinks import AuditSink as AuditSink
from .sinks import JsonlFileSink as JsonlFileSink
from .sinks import LoggingSink as LoggingSink
from .sinks import MemorySink as MemorySink
from .verify import VerifyResult as VerifyResult
from .verify import read_jsonl as read_jsonl
from .verify import verify_file as verify_file
from .verify import verify_records as verify_records

if _typing.TYPE_CHECKING:
    from .cli import add_audit_parser as add_audit_parser
    from .cli import run_audit as run_audit

#: names loaded from .cli on first access (audit/ imports nothing of ours outside it, so not via _lazy)
_FROM_CLI = ("add_audit_parser", "run_audit")


def __getattr__(name: str) -> _typing.Any:
    if name not in _FROM_CLI:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import cli

    value = getattr(cli, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_CLI))
