"""Audit record format: event types, canonical JSON, hashes, signatures (host side).

Everything here runs on the trusted host. :class:`~glsandbox_kernel.audit.log.AuditLog`
calls these helpers to seal each record, and
:mod:`glsandbox_kernel.audit.verify` calls the same helpers to check them, so
both sides agree byte for byte on what was hashed.

A sealed record is one JSON object::

    timestamp, event_type, session_id, isolation_type, sandbox_mode,
    security_level, provenance_hash, execution_time, metrics, violations,
    extra, seq, prev_hash, record_hash[, signature]

``record_hash`` is the SHA-256 of :func:`canonical_json` (RFC 8785 JCS, see
:mod:`.canonical`) of the record without ``record_hash`` and ``signature``;
``prev_hash`` is the previous record's ``record_hash`` (:data:`GENESIS_HASH`
for the first), and ``signature`` is the signature of ``record_hash`` when a
key is configured (:mod:`.keys`: HMAC-SHA256 or Ed25519).

``format`` (hashed) names the encoding: :data:`RECORD_FORMAT` (2) is JCS. A
record without ``format`` was written before JCS (format 1: Python's
``json.dumps(sort_keys=True)``, which a JavaScript round trip can change);
:func:`compute_record_hash` still checks those.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from . import _jcs_fast
from .canonical import jcs_dumps

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record of a chain."""

#: Fields that are not covered by ``record_hash``.
UNHASHED_FIELDS = frozenset({"record_hash", "signature"})

_PROVENANCE_TAG = b"glsandbox-provenance-v1\x00"

RECORD_FORMAT = 2
"""``format`` of records sealed now: hashed as RFC 8785 JCS."""


class EventType(enum.StrEnum):
    """What an audit record reports. Cell events reuse the execution ones."""

    SESSION_START = "session_start"
    EXECUTION_SUCCESS = "execution_success"
    EXECUTION_ERROR = "execution_error"
    TIMEOUT = "timeout"
    MEMORY_EXCEEDED = "memory_exceeded"
    VIOLATION = "violation"
    ESCAPE_ATTEMPT = "escape_attempt"
    WORKER_CRASHED = "worker_crashed"
    FALLBACK = "fallback"
    SESSION_END = "session_end"


def _strict_default(obj: Any) -> Any:
    """``json.dumps`` hook for the few non-JSON types a config dict may hold."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=lambda item: canonical_json(item))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


_LEGACY_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    default=_strict_default,
)


def canonical_json(obj: Any) -> bytes:
    """The one byte encoding that is hashed: RFC 8785 JCS (:func:`.canonical.jcs_dumps`).

    Called by the audit log when sealing records, by the verifier when
    checking them, and by the notebook evidence and attestations (host side).
    Enums become their value, paths strings, bytes hex, sets sorted lists and
    dataclasses dicts; any other non-JSON type raises ``TypeError``, NaN and
    infinities ``ValueError``.
    """
    fast = fast_canonical_json(obj)
    return fast if fast is not None else jcs_dumps(obj, _strict_default)


def fast_canonical_json(obj: Any) -> bytes | None:
    """The JCS bytes of ``obj`` by the shortcut of :mod:`._jcs_fast`, or None where it does not hold (host side).

    Anything the shortcut does not cover (non-ASCII keys, ints beyond 2**53, NaN, infinities,
    non-JSON types, text that is not valid UTF-8 such as lone surrogates) gives None, and the
    caller falls back to :func:`.canonical.jcs_dumps`, which decides.
    """
    return _jcs_fast.encode(obj)


def legacy_canonical_json(obj: Any) -> bytes:
    """Format-1 encoding (records without ``format``): ``json.dumps(sort_keys=True)`` compact."""
    return _LEGACY_ENCODER.encode(obj).encode("utf-8")


def _as_bytes(value: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def provenance_hash(code: bytes | str, inputs: bytes | str, config: Mapping[str, Any]) -> str:
    """SHA-256 hex naming exactly what ran: code, inputs and effective config.

    Called host side by the session/kernel before a call or cell is sent to
    the worker. ``code`` is the cell source or the function's pickled bytes,
    ``inputs`` the pickled arguments (``b""`` for a cell), ``config`` the
    effective configuration as a JSON-ready dict. Each part is prefixed with
    its 8-byte length so that moving bytes between parts changes the hash.
    """
    digest = hashlib.sha256(_PROVENANCE_TAG)
    for part in (_as_bytes(code), _as_bytes(inputs), canonical_json(dict(config))):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def compute_record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``record`` minus hash and signature.

    Called by :class:`AuditLog` when sealing and by the verifier (host side).
    """
    body = {k: v for k, v in record.items() if k not in UNHASHED_FIELDS}
    encode = legacy_canonical_json if "format" not in record else canonical_json
    return hashlib.sha256(encode(body)).hexdigest()


def checked_record_hash(record: Mapping[str, Any]) -> str | None:
    """:func:`compute_record_hash` of a record read back (a file, a notebook), or None when no
    sealed record could hold its contents (NaN, an int beyond a double, nesting past the limit):
    an edit. Who calls: the verifiers (host side), which name such a record instead of crashing.
    """
    try:
        return compute_record_hash(record)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None


def sign(record_hash: str, key: bytes) -> str:
    """HMAC-SHA256 hex of ``record_hash`` under ``key`` (host side)."""
    return hmac.new(key, record_hash.encode("ascii"), hashlib.sha256).hexdigest()
