"""The hash-chained audit log (host side).

The session, kernel and magics each hold one :class:`AuditLog` and call
:meth:`AuditLog.emit` for every event (session start/end, each call or cell,
timeouts, violations, fallbacks, crashes). ``emit`` seals the record — seq,
``prev_hash``, ``record_hash``, optional HMAC ``signature`` — and hands it to
every sink. Nothing here talks to the worker.

When the first sink is a :class:`~glsandbox_kernel.audit.sinks.JsonlFileSink`,
that file holds the chain: a new log continues from the file's last record
(seq and ``prev_hash`` carry on), across sessions and processes, and each
append re-checks the tail under the file lock, so concurrent writers extend
one chain rather than forking it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .keys import Signer, signer_from_bytes
from .records import GENESIS_HASH, RECORD_FORMAT, EventType, _strict_default, canonical_json
from .sinks import AuditSink, JsonlFileSink

logger = logging.getLogger(__name__)


class AuditLog:
    """Seals audit records into a hash chain and writes them to sinks (host side).

    ``key``, when given, signs every ``record_hash``: bytes are an HMAC secret
    or a PEM Ed25519 private key (:func:`.keys.signer_from_bytes`). ``emit``
    is thread-safe. If a sink raises, the remaining sinks are still written
    and the first error is re-raised (the chain state already includes the
    record, as the first sink has it).
    """

    def __init__(
        self,
        *,
        session_id: str,
        sinks: Sequence[AuditSink],
        key: bytes | Signer | None = None,
    ) -> None:
        if isinstance(key, (bytes, bytearray)):
            if not key:
                raise ValueError("audit key is empty; pass None to disable signing")
            key = signer_from_bytes(bytes(key))
        self.session_id = str(session_id)
        self._sinks: list[AuditSink] = list(sinks)
        self._key: Signer | None = key
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        first = self._sinks[0] if self._sinks else None
        self._chain_sink = first if isinstance(first, JsonlFileSink) else None
        self._mirrors = self._sinks[1:] if self._chain_sink is not None else self._sinks
        if self._chain_sink is not None:
            self._next_seq, self._head = self._chain_sink.tail()
        else:
            self._next_seq, self._head = 0, GENESIS_HASH

    @property
    def head(self) -> str:
        """``record_hash`` of the last record this log wrote or continued from.

        Keep it (with :attr:`next_seq`) to detect later truncation of the file:
        ``verify_file(path, expected_head=head)``.
        """
        return self._head

    @property
    def signer(self) -> Signer | None:
        """The key records are signed with (host side), or None."""
        return self._key

    @property
    def next_seq(self) -> int:
        """The seq the next record will get (as far as this log knows)."""
        return self._next_seq

    @property
    def records(self) -> list[dict[str, Any]]:
        """Copies of the records this log emitted, oldest first."""
        with self._lock:
            lines = list(self._lines)
        return [json.loads(line) for line in lines]

    @property
    def sinks(self) -> list[AuditSink]:
        """The sinks, first (chain-holding) one first."""
        return list(self._sinks)

    def emit(
        self,
        event_type: EventType | str,
        *,
        isolation_type: str | enum.Enum,
        sandbox_mode: str | enum.Enum,
        security_level: str | enum.Enum,
        provenance_hash: str | None = None,
        execution_time: float | None = None,
        metrics: Mapping[str, Any] | None = None,
        violations: Sequence[Mapping[str, Any]] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Seal one record, write it to every sink and return it.

        Called host side by the session, kernel and magics. ``event_type``
        must be an :class:`EventType` value (``ValueError`` otherwise).
        Enum arguments are recorded by value; ``metrics``, ``violations`` and
        ``extra`` are reduced to plain JSON (non-finite floats become null,
        unknown objects their ``repr``).
        """
        free_form: list[Any] = [
            None if metrics is None else metrics,
            list(violations) if violations else [],
            extra if extra else {},
        ]
        if not _is_plain(free_form, 0):
            free_form = _plain(free_form)
        body: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "timestamp": time.time(),
            "event_type": EventType(event_type).value,
            "session_id": self.session_id,
            "isolation_type": _label(isolation_type),
            "sandbox_mode": _label(sandbox_mode),
            "security_level": _label(security_level),
            "provenance_hash": provenance_hash,
            "execution_time": _finite(execution_time),
            "metrics": free_form[0],
            "violations": free_form[1],
            "extra": free_form[2],
        }
        key = self._key

        def seal(seq: int, prev_hash: str) -> tuple[dict[str, Any], bytes]:
            body["seq"] = seq
            body["prev_hash"] = prev_hash
            encoded = canonical_json(body)
            record_hash = hashlib.sha256(encoded).hexdigest()
            body["record_hash"] = record_hash
            # The line need not be canonical (the verifier re-encodes), so the
            # hash and signature are spliced onto the hashed bytes.
            tail = b',"record_hash":"' + record_hash.encode("ascii") + b'"'
            if key is not None:
                signature = key.sign(record_hash.encode("ascii"))
                body["signature"] = signature
                tail += b',"signature":"' + signature.encode("ascii") + b'"'
            return body, encoded[:-1] + tail + b"}\n"

        with self._lock:
            if self._chain_sink is not None:
                record, line = self._chain_sink.append_chained(seal)
            else:
                record, line = seal(self._next_seq, self._head)
            self._next_seq = record["seq"] + 1
            self._head = record["record_hash"]
            self._lines.append(line)
            _write_all(self._mirrors, record)
        return record

    def close(self) -> None:
        """Close every sink (idempotent). Called when the session ends."""
        _close_all(self._sinks)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _write_all(sinks: Sequence[AuditSink], record: dict[str, Any]) -> None:
    first_error: BaseException | None = None
    for sink in sinks:
        try:
            sink.write(record)
        except Exception as exc:
            logger.exception("audit sink %r failed to write seq %s", sink, record["seq"])
            first_error = first_error or exc
    if first_error is not None:
        raise first_error


def _close_all(sinks: Sequence[AuditSink]) -> None:
    first_error: BaseException | None = None
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:
            logger.exception("audit sink %r failed to close", sink)
            first_error = first_error or exc
    if first_error is not None:
        raise first_error


def _label(value: str | enum.Enum) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _lenient_default(obj: Any) -> Any:
    try:
        return _strict_default(obj)
    except TypeError:
        return repr(obj)


_PLAIN_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_lenient_default)
_PLAIN_DECODER = json.JSONDecoder()


_MAX_PLAIN_DEPTH = 32


def _is_plain(obj: Any, depth: int) -> bool:
    """True if ``obj`` is already JSON data whose canonical form survives a reload.

    That is: dicts with str keys, lists, str, int, bool, None and finite
    floats. Checking is cheaper than the encode/decode round trip of
    :func:`_plain` that emit otherwise pays.
    """
    kind = type(obj)
    if kind is str or kind is int or kind is bool or obj is None:
        return True
    if kind is float:
        return math.isfinite(obj)
    if depth >= _MAX_PLAIN_DEPTH:
        return False
    if kind is dict:
        return all(type(k) is str and _is_plain(v, depth + 1) for k, v in obj.items())
    if kind is list:
        return all(_is_plain(v, depth + 1) for v in obj)
    return False


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON data (fast path: one C-level encode/decode round trip)."""
    try:
        text = _PLAIN_ENCODER.encode(obj)
    except (TypeError, ValueError):
        text = _PLAIN_ENCODER.encode(_sanitize(obj))
    return _PLAIN_DECODER.decode(text)


def _sanitize(obj: Any) -> Any:
    """Slow path for :func:`_plain`: non-finite floats to None, odd keys to str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {_key(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    if obj is None or isinstance(obj, (str, int)):
        return obj
    converted = _lenient_default(obj)
    return converted if isinstance(converted, str) else _sanitize(converted)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, enum.Enum):
        return str(key.value)
    return str(key)


def load_key(path: str | os.PathLike[str] | None = None, env_var: str = "GLSANDBOX_AUDIT_KEY") -> bytes | None:
    """The signing/verifying key material (HMAC secret or PEM Ed25519 key), or None (host side).

    Called by whoever builds the :class:`AuditLog` and by ``glsandbox audit
    verify``. With ``path``, the file's contents stripped of surrounding
    whitespace (``FileNotFoundError`` if missing, ``ValueError`` if empty);
    otherwise the value of ``env_var`` stripped, or None when it is unset or
    empty.
    """
    if path is not None:
        key = Path(path).read_bytes().strip()
        if not key:
            raise ValueError(f"audit key file {os.fspath(path)} is empty")
        return key
    value = os.environ.get(env_var, "").strip()
    return value.encode("utf-8") if value else None
