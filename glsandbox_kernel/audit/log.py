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
from typing import Any, Required, TypedDict, Unpack

from ..hostloop import LOOP, Timer
from .keys import Signer, signer_from_bytes
from .records import GENESIS_HASH, RECORD_FORMAT, EventType, _strict_default, canonical_json, fast_canonical_json
from .sinks import AuditSink, ClosesOnExit, JsonlFileSink, close_all, write_all

logger = logging.getLogger(__name__)


class AuditLog(ClosesOnExit):
    """Seals audit records into a hash chain and writes them to sinks (host side).

    ``key``, when given, signs every ``record_hash``: bytes are an HMAC secret
    or a PEM Ed25519 private key (:func:`.keys.signer_from_bytes`). ``emit``
    and ``append`` are thread-safe. If a sink raises, the remaining sinks are
    still written and the first error is re-raised (the chain state already
    includes the record, as the first sink has it).

    Group commit: :meth:`emit` seals and writes a record at once (fsync
    included). :meth:`append` (a call's record, from the caller's thread) does
    the least: with a chain file it seals and writes the record before
    returning (so a SIGKILL of the host loses nothing written) and leaves the
    fsync to :meth:`commit`; without one (nothing durable to wait for) it only
    queues the record, unsealed. :meth:`commit` seals what is queued, in order,
    and makes everything written durable with one fsync; the caller runs it
    while its next call's worker works (the one record the last call queued:
    sealed while the caller would wait anyway), the shared host loop a moment
    after a caller went idle, and :meth:`close` at the end.
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
        self._lock = threading.RLock()
        self._lines: list[bytes] = []
        #: bodies handed to append() and not sealed yet (no chain file: nothing durable waits)
        self._queue: list[dict[str, Any]] = []
        #: records written to the chain file and not yet fsynced
        self._unsynced = 0
        self._commit_timer: Timer | None = None
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
        self.commit()
        return self._head

    @property
    def signer(self) -> Signer | None:
        """The key records are signed with (host side), or None."""
        return self._key

    @property
    def next_seq(self) -> int:
        """The seq the next record will get (as far as this log knows)."""
        self.commit()
        return self._next_seq

    @property
    def records(self) -> list[dict[str, Any]]:
        """Copies of the records this log emitted, oldest first."""
        with self._lock:
            self._seal_queue()
            lines = list(self._lines)
        return [json.loads(line) for line in lines]

    @property
    def appended(self) -> int:
        """Records this log took so far, sealed or still queued: the index the next one gets in :meth:`lines`."""
        with self._lock:
            return len(self._lines) + len(self._queue)

    def lines(self, start: int, end: int) -> list[bytes]:
        """The sealed lines of the ``start``-th to ``end``-th record this log took, as written.

        Seals and commits first when that range is not all durable yet (the
        Dask plugin ships a call's records this way when its result leaves
        the worker, instead of sealing them on the task's thread).
        """
        with self._lock:
            if end > len(self._lines) or self._unsynced:
                self.commit()
            return self._lines[start:end]

    @property
    def sinks(self) -> list[AuditSink]:
        """The sinks, first (chain-holding) one first."""
        return list(self._sinks)

    @property
    def pending(self) -> int:
        """Records appended and not yet durable (queued or written without fsync)."""
        return len(self._queue) + self._unsynced

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
        """Seal one record now (after any queued ones), write it to every sink, fsync, return it.

        Called host side by the session, kernel and magics. ``event_type``
        must be an :class:`EventType` value (``ValueError`` otherwise).
        Enum arguments are recorded by value; ``metrics``, ``violations`` and
        ``extra`` are reduced to plain JSON (non-finite floats become null,
        unknown objects their ``repr``).
        """
        body = _body(
            self.session_id,
            event_type,
            isolation_type=isolation_type,
            sandbox_mode=sandbox_mode,
            security_level=security_level,
            provenance_hash=provenance_hash,
            execution_time=execution_time,
            metrics=metrics,
            violations=violations,
            extra=extra,
        )
        with self._lock:
            self._seal_queue()
            record = self._write([body], sync=True)[0]
        return record

    def append(self, event_type: EventType | str, **fields: Unpack[RecordFields]) -> None:
        """A call's record, group-committed (see the class docstring). The caller's thread.

        Takes what :meth:`emit` takes. The caller hands ``metrics``,
        ``violations`` and ``extra`` over: they must not be changed afterwards
        (they may be sealed later).
        """
        body = _body(self.session_id, event_type, **fields)
        with self._lock:
            if self._chain_sink is not None:
                self._seal_queue()
                self._write([body], sync=False)
            elif len(self._queue) < MAX_QUEUE:
                self._queue.append(body)
            else:  # the host loop is behind: the caller seals (bounded memory)
                self._queue.append(body)
                self._seal_queue()
            if self._commit_timer is None:
                self._commit_timer = LOOP.call_later(COMMIT_DELAY, self._commit_from_loop)

    def commit(self) -> None:
        """Seal the queued records in order and make every written one durable (one fsync).

        Always under the lock: the host loop may be writing a batch it took off the queue
        (the queue is already empty then), and a reader must see that batch too.
        """
        with self._lock:
            if not self._queue and not self._unsynced:
                return
            self._seal_queue()
            if self._unsynced and self._chain_sink is not None:
                self._chain_sink.sync()
            self._unsynced = 0

    def sync(self) -> None:
        """Make the records written so far durable (one fsync); queued ones stay queued.

        For a caller that must not seal now (e.g. with a lock another sealer
        may wait on); :meth:`commit` does this and seals the queue too.
        """
        if self._unsynced:
            with self._lock:
                if self._unsynced and self._chain_sink is not None:
                    self._chain_sink.sync()
                self._unsynced = 0

    def _commit_from_loop(self) -> None:
        """Host loop thread: seal a few queued records at a time (the GIL is let go between batches)."""
        with self._lock:
            self._commit_timer = None
            if len(self._queue) > LOOP_BATCH:
                bodies, self._queue = self._queue[:LOOP_BATCH], self._queue[LOOP_BATCH:]
                self._write(bodies, sync=False)
                self._commit_timer = LOOP.call_later(0.0, self._commit_from_loop)
                return
            self.commit()

    def _seal_queue(self) -> None:
        """With the lock held: seal and write what append() queued, as one batch."""
        if not self._queue:
            return
        bodies, self._queue = self._queue, []
        self._write(bodies, sync=False)

    def _write(self, bodies: list[dict[str, Any]], *, sync: bool) -> list[dict[str, Any]]:
        """With the lock held: seal ``bodies`` in order onto the chain and write them to every sink."""
        key = self._key

        def seal(body: dict[str, Any], seq: int, prev_hash: str) -> tuple[dict[str, Any], bytes]:
            body["seq"] = seq
            body["prev_hash"] = prev_hash
            encoded = _encode_body(body)
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

        if self._chain_sink is not None:
            sealed = self._chain_sink.append_batch(bodies, seal, sync=sync)
            self._unsynced = 0 if sync else self._unsynced + len(sealed)
        else:
            sealed = []
            for body in bodies:
                sealed.append(seal(body, self._next_seq, self._head))
                self._next_seq, self._head = body["seq"] + 1, body["record_hash"]
        first_error: BaseException | None = None
        for record, line in sealed:
            self._next_seq = record["seq"] + 1
            self._head = record["record_hash"]
            self._lines.append(line)
            try:
                write_all(self._mirrors, record, line)
            except Exception as exc:  # noqa: BLE001 - the rest of the batch is still written
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return [record for record, _ in sealed]

    def close(self) -> None:
        """Make every record durable, then close every sink (idempotent). Called when the session ends."""
        with self._lock:
            try:
                self.commit()
            finally:
                if self._commit_timer is not None:
                    self._commit_timer.cancel()
                    self._commit_timer = None
                close_all(self._sinks)


#: how long after a record was appended the host loop commits it (the next call syncs a file first)
COMMIT_DELAY = 0.05
#: records the host loop seals in one go (then it lets other sessions' jobs and callers run)
LOOP_BATCH = 16
#: queued records past which the caller seals them itself
MAX_QUEUE = 1024


_EVENT_VALUES: dict[Any, str] = {e: e.value for e in EventType}


class RecordFields(TypedDict, total=False):
    """The fields of :meth:`AuditLog.emit` / :meth:`AuditLog.append` after the event type."""

    isolation_type: Required[str | enum.Enum]
    sandbox_mode: Required[str | enum.Enum]
    security_level: Required[str | enum.Enum]
    provenance_hash: str | None
    execution_time: float | None
    metrics: Mapping[str, Any] | None
    violations: Sequence[Mapping[str, Any]] | None
    extra: Mapping[str, Any] | None


def _body(session_id: str, event_type: EventType | str, **fields: Unpack[RecordFields]) -> dict[str, Any]:
    """The unsealed record (cheap: no copy, no encoding; :func:`_make_plain` follows)."""
    violations = fields.get("violations")
    extra = fields.get("extra")
    return {
        "format": RECORD_FORMAT,
        "timestamp": time.time(),
        "event_type": _EVENT_VALUES.get(event_type) or EventType(event_type).value,
        "session_id": session_id,
        "isolation_type": _label(fields["isolation_type"]),
        "sandbox_mode": _label(fields["sandbox_mode"]),
        "security_level": _label(fields["security_level"]),
        "provenance_hash": fields.get("provenance_hash"),
        "execution_time": _finite(fields.get("execution_time")),
        "metrics": fields.get("metrics"),
        "violations": list(violations) if violations else [],
        "extra": extra if extra else {},
    }


def _make_plain(body: dict[str, Any]) -> None:
    """Reduce the free-form parts of ``body`` to plain JSON data (new objects: the caller's stay theirs)."""
    body["metrics"], body["violations"], body["extra"] = _plain([body["metrics"], body["violations"], body["extra"]])


def _encode_body(body: dict[str, Any]) -> bytes:
    """JCS bytes of ``body`` (seq and prev_hash set); no content can stop a record being written.

    The C-speed path where it holds (:func:`.records.fast_canonical_json`);
    else the parts made plain and encoded the slow way; what still cannot be
    recorded as it is (lone surrogates, cycles) is recorded scrubbed and
    marked ``audit_fallback``.
    """
    fast = fast_canonical_json(body)
    if fast is not None:
        return fast
    try:
        _make_plain(body)
        encoded = canonical_json(body)
        encoded.decode("utf-8")  # lone surrogates: the line would not be UTF-8 text
        return encoded
    except (TypeError, ValueError, UnicodeError, RecursionError, OverflowError) as exc:
        logger.error("audit record could not be sealed as it is; writing a marked one", exc_info=True)
        reason = f"{type(exc).__name__}: {exc}"[:300].encode("utf-8", "backslashreplace").decode("utf-8")
        body["metrics"], body["violations"] = _scrub(body["metrics"]), _scrub(body["violations"])
        body["extra"] = {**(_scrub(body["extra"]) or {}), "audit_fallback": reason}
        return canonical_json(body)


def _scrub(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON data that always encodes: text escaped, bytes hex, str keys, bounded depth."""
    if depth > 32:
        return "<too deep>"
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):  # beyond a double's range JSON has no number for it (nor str() past 4300 digits)
        return value if value.bit_length() <= 1023 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:4096]).hex()
    if isinstance(value, Mapping):
        return {_scrub(str(k)): _scrub(v, depth + 1) for k, v in list(value.items())[:10000]}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, depth + 1) for v in list(value)[:10000]]
    return _scrub(repr(value)[:2000])


def _label(value: str | enum.Enum) -> str:
    if type(value) is str:
        return value
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


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON data (one C-level encode/decode round trip; a new object)."""
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


#: a file holding the key, which ``glsandbox run --key`` hands its kernel (before ``$GLSANDBOX_AUDIT_KEY``)
KEY_FILE_ENV = "GLSANDBOX_AUDIT_KEY_FILE"


def load_key(path: str | os.PathLike[str] | None = None, env_var: str = "GLSANDBOX_AUDIT_KEY") -> bytes | None:
    """The signing/verifying key material (HMAC secret or PEM Ed25519 key), or None (host side).

    Called by whoever builds the :class:`AuditLog` and by ``glsandbox audit
    verify``. With ``path``, the file's contents stripped of surrounding
    whitespace (``FileNotFoundError`` if missing, ``ValueError`` if empty);
    otherwise the file named by ``$GLSANDBOX_AUDIT_KEY_FILE`` (any bytes), else the value of
    ``env_var`` stripped, or None when it is unset or empty.
    """
    if path is None and env_var == "GLSANDBOX_AUDIT_KEY":
        path = os.environ.get(KEY_FILE_ENV) or None
    if path is not None:
        key = Path(path).read_bytes().strip()
        if not key:
            raise ValueError(f"audit key file {os.fspath(path)} is empty")
        return key
    # the bytes themselves: a binary key file passed on by `glsandbox run` is not valid UTF-8
    value = os.environb.get(env_var.encode(), b"").strip()
    return value or None
