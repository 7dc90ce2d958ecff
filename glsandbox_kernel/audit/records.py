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
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from .canonical import jcs_dumps, js_number

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


_SAFE_INT = 2**53
_C_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fast_canonical_json(obj: Any) -> bytes | None:
    """The JCS bytes of ``obj`` at C speed, or None where the shortcut does not hold (host side).

    Python's C ``json`` encoder writes the same bytes as RFC 8785 when every
    key is ASCII (code-point order is then UTF-16 order), every int is within
    2**53, every float is integral below 2**53 (written as the int) or in
    1e-4 <= |x| < 1e16 (where ``repr`` and ECMAScript agree), and every value
    is plain JSON data. One walk checks that and converts the integral floats;
    any other finite float (a warm call's ``execution_time`` below 100 us) is
    written by :func:`.canonical.js_number` into a placeholder the encoder
    leaves unique (checked: a string that encodes the same way makes the
    shortcut give up). Anything else (and text that is not valid UTF-8) gives
    None, and the caller falls back to :func:`.canonical.jcs_dumps`. Lone
    surrogates give None here too: the slow path decides what to do with them.
    """
    odd: list[float] = []
    try:
        plain = _jcs_plain(obj, 0, odd)
    except _NotFast:
        return None
    try:
        text = _C_ENCODER.encode(plain)
    except (ValueError, UnicodeError, RecursionError):
        return None
    if odd:
        # Each placeholder is encoded as the string "\u0000<i>" (sorted keys: in any order). Exactly one
        # such text per placeholder means no other text encoded that way (a string's quote is escaped).
        parts = text.split('"\\u0000')
        if len(parts) != len(odd) + 1:
            return None
        for j in range(1, len(parts)):
            part = parts[j]
            end = part.index('"')
            parts[j] = _js_float(odd[int(part[:end])]) + part[end + 1 :]
        text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeError:
        return None


def _js_float(value: float) -> str:
    """:func:`.canonical.js_number` of a finite float, below 1e-4 from ``repr`` alone (no Decimal)."""
    text = repr(value)
    mantissa, _, exp = text.partition("e")
    e = int(exp) if exp else 0
    if e >= 0:
        return js_number(value)
    sign = ""
    if mantissa[0] == "-":
        sign, mantissa = "-", mantissa[1:]
    if e >= -6:  # ECMAScript writes 1e-6 <= |x| < 1e-4 without an exponent: 0.0000<digits>
        return sign + "0." + "0" * (-e - 1) + mantissa.replace(".", "")
    return f"{sign}{mantissa}e{e}"  # ECMAScript's exponent has no leading zero: 1.5e-7


class _NotFast(Exception):
    pass


def _jcs_float(obj: float, odd: list[float]) -> float | int | str:
    a = abs(obj)
    if 1e-4 <= a < 1e16 or a == 0.0:
        if not obj.is_integer():
            return obj
        if a < _SAFE_INT:
            return int(obj)
    elif a != a or a == math.inf:  # NaN and infinities: the slow path refuses them
        raise _NotFast
    odd.append(obj)
    return f"\x00{len(odd) - 1}"


def _jcs_plain(obj: Any, depth: int, odd: list[float]) -> Any:
    """``obj`` with integral floats as ints, checked for the fast path (scalars inline: no call each)."""
    kind = type(obj)
    if kind is dict:
        if depth > 64:
            raise _NotFast
        out = {}
        for k, v in obj.items():
            if type(k) is not str or not k.isascii():
                raise _NotFast
            t = type(v)
            if t is str or v is None or t is bool:
                out[k] = v
            elif t is int:
                if not -_SAFE_INT <= v <= _SAFE_INT:
                    raise _NotFast
                out[k] = v
            elif t is float:
                out[k] = _jcs_float(v, odd)
            else:
                out[k] = _jcs_plain(v, depth + 1, odd)
        return out
    if kind is list:
        if depth > 64:
            raise _NotFast
        return [_jcs_plain(v, depth + 1, odd) for v in obj]
    if kind is str or obj is None or kind is bool:
        return obj
    if kind is int:
        if -_SAFE_INT <= obj <= _SAFE_INT:
            return obj
        raise _NotFast
    if kind is float:
        return _jcs_float(obj, odd)
    raise _NotFast


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


def sign(record_hash: str, key: bytes) -> str:
    """HMAC-SHA256 hex of ``record_hash`` under ``key`` (host side)."""
    return hmac.new(key, record_hash.encode("ascii"), hashlib.sha256).hexdigest()
