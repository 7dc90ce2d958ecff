"""Tamper-evident audit log: records, hash chain, sinks, verification (host side).

The session, kernel and magics hold an :class:`AuditLog` and call
:meth:`AuditLog.emit` for every event; ``glsandbox audit verify`` checks the
resulting JSONL file with :func:`verify_file`.
"""

from .cli import add_audit_parser as add_audit_parser
from .cli import run_audit as run_audit
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
