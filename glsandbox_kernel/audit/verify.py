"""Verification of an audit chain (host side).

Called by ``glsandbox audit verify`` and by anyone holding a JSONL audit
file or a list of records. Each record's ``record_hash`` is recomputed, each
``prev_hash`` and ``seq`` is checked against the record before it, and, with
a key, each ``signature``. This detects:

- an edited record (its ``record_hash`` no longer matches its contents, or,
  if the hash was recomputed, the next record's ``prev_hash`` no longer
  matches);
- a deleted, inserted or reordered record (``prev_hash`` / ``seq`` breaks);
- records removed from the start (the chain does not begin at seq 0 with the
  genesis ``prev_hash``);
- damage in the middle of a file (a line that is not JSON);
- forged or re-signed records (bad or missing ``signature``, given the key).

**Truncation at the end cannot be seen from the file alone**: a file whose
last records were cut off is a valid, shorter chain. A caller that kept the
chain head (``AuditLog.head``) or the number of records written
(``AuditLog.next_seq``) passes ``expected_head`` / ``expected_count``;
verification then fails unless that head is still in the chain and at least
that many records are present (a chain that has since grown is fine).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .keys import Verifier, signature_mismatch, unchecked_signature_note, verifier_from_bytes
from .records import GENESIS_HASH, checked_record_hash

_REQUIRED = ("seq", "prev_hash", "record_hash")


@dataclass
class VerifyResult:
    """Outcome of a verification.

    ``first_bad`` is the 1-based index (= line number in a file) of the first
    bad record, or ``count + 1`` when records are missing at the end, or None.
    ``problems`` make ``ok`` false; ``notes`` do not (e.g. signatures present
    but no key to check them).
    """

    ok: bool
    count: int
    first_bad: int | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    head: str | None = None


class _Unparsable:
    """Stands for a line that is not a JSON object (damaged or truncated)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def verify_records(
    records: Iterable[Any],
    key: bytes | Verifier | None = None,
    *,
    expected_head: str | None = None,
    expected_count: int | None = None,
    from_genesis: bool = True,
) -> VerifyResult:
    """Check a sequence of records as one hash chain (host side).

    ``from_genesis=False`` accepts a chain that starts mid-way (for example
    the records of one session continuing a longer file); the first record's
    own hash and signature are still checked. See the module docstring for
    ``expected_head`` / ``expected_count``.
    """
    problems: list[str] = []
    notes: list[str] = []
    verifier = verifier_from_bytes(key) if isinstance(key, (bytes, bytearray)) else key
    first_bad: int | None = None
    prev_hash: str | None = GENESIS_HASH if from_genesis else None
    expected_seq: int | None = 0 if from_genesis else None
    head_found = False
    signed_noted = False
    count = 0

    def bad(index: int, message: str) -> None:
        nonlocal first_bad
        if first_bad is None:
            first_bad = index
        problems.append(f"record {index} (line {index}): {message}")

    for index, record in enumerate(records, start=1):
        count = index
        if isinstance(record, _Unparsable):
            bad(index, f"{record.reason} (truncated or damaged line)")
            prev_hash = None
            expected_seq = None if expected_seq is None else expected_seq + 1
            continue
        if not isinstance(record, dict):
            bad(index, f"is a JSON {type(record).__name__}, not an object")
            prev_hash = None
            expected_seq = None if expected_seq is None else expected_seq + 1
            continue
        missing = [name for name in _REQUIRED if name not in record]
        if missing:
            bad(index, f"missing field(s) {', '.join(missing)}")
            prev_hash = None
            expected_seq = None if expected_seq is None else expected_seq + 1
            continue

        stored_hash = record["record_hash"]
        computed = checked_record_hash(record)
        if computed is None:
            bad(index, "holds a value no sealed record can (NaN, an int beyond a double, deep nesting): edited")
        elif computed != stored_hash:
            bad(index, "record_hash does not match its contents (edited)")

        seq = record["seq"]
        seq_ok = seq == expected_seq
        if isinstance(seq, bool) or not isinstance(seq, int):
            bad(index, f"seq is {seq!r}, not an integer")
        elif expected_seq is not None and seq != expected_seq:
            if seq > expected_seq:
                gap = seq - expected_seq
                what = f"{gap} record(s) missing before it (deleted)"
                if index == 1:
                    what = f"{gap} record(s) missing at the start (deleted)"
                bad(index, f"seq is {seq}, expected {expected_seq}: {what}")
            else:
                bad(
                    index,
                    f"seq is {seq}, expected {expected_seq}: out of order (a record was inserted or reordered)",
                )

        if prev_hash is not None and record["prev_hash"] != prev_hash:
            if index == 1:
                bad(
                    index,
                    "prev_hash is not the genesis hash: the chain does not start here (records deleted from the start)",
                )
            elif seq_ok:
                bad(
                    index,
                    f"prev_hash does not match the record_hash of record {index - 1} "
                    f"(record {index - 1} was replaced or edited and re-hashed, "
                    "or a record was inserted)",
                )
            else:
                bad(
                    index,
                    f"prev_hash does not match the record_hash of record {index - 1} "
                    "(a record was deleted, inserted or reordered before it)",
                )

        signature = record.get("signature")
        if verifier is not None:
            if signature is None:
                bad(index, "signature missing (a key was given)")
            elif not verifier.verify(str(stored_hash).encode("ascii", "replace"), signature):
                bad(index, f"signature does not match: the record is {signature_mismatch(verifier, signature)}")
        elif signature is not None and not signed_noted:
            signed_noted = True
            notes.append(unchecked_signature_note("records are", signature))

        prev_hash = stored_hash if isinstance(stored_hash, str) else None
        if expected_head is not None and stored_hash == expected_head:
            head_found = True
        expected_seq = seq + 1 if isinstance(seq, int) and not isinstance(seq, bool) else None

    head = prev_hash if count else None

    if expected_count is not None and count < expected_count:
        problems.append(
            f"chain holds {count} record(s), expected at least {expected_count}: "
            f"records {count + 1}..{expected_count} are missing (truncated at the end)"
        )
        first_bad = first_bad if first_bad is not None else count + 1
    if expected_head is not None and not head_found:
        problems.append(
            f"expected head {expected_head[:16]}... is not in the chain (last record is "
            f"{(head or 'none')[:16]}...): records were removed at the end (truncated) "
            "or the chain was replaced"
        )
        first_bad = first_bad if first_bad is not None else count + 1

    return VerifyResult(
        ok=not problems,
        count=count,
        first_bad=first_bad,
        problems=problems,
        notes=notes,
        head=head,
    )


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object as ``json`` reads it, but a key held twice raises (:class:`_DuplicateKey`)."""
    obj: dict[str, Any] = {}
    for key, value in items:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


class _DuplicateKey(Exception):
    pass


def _parse_lines(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Each line of ``path`` as JSON, or an :class:`_Unparsable` stand-in.

    glsandbox writes each record as one line of compact UTF-8 JSON, so a byte-order mark (a
    re-encoding) and a key held twice (a hand edit: JSON readers disagree on which one counts, so
    another reader sees another record than the one verified) make the line damaged.
    """
    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.rstrip(b"\n")
            if not line.strip():
                yield _Unparsable("empty line")
                continue
            if line.startswith(b"\xef\xbb\xbf"):
                yield _Unparsable("begins with a UTF-8 byte-order mark, which glsandbox never writes (re-encoded)")
                continue
            try:
                yield json.loads(line, object_pairs_hook=_pairs)
            except _DuplicateKey as exc:
                yield _Unparsable(
                    f"holds the key {str(exc.args[0])[:60]!r} twice (a hand edit: JSON readers disagree on "
                    "which one counts)"
                )
            except json.JSONDecodeError as exc:
                unfinished = "" if raw.endswith(b"\n") else ", unfinished last line"
                yield _Unparsable(f"not valid JSON ({exc.msg}{unfinished})")
            except ValueError:
                yield _Unparsable("not valid UTF-8 JSON")
            except RecursionError:
                yield _Unparsable("JSON nested too deeply to read")


def verify_file(
    path: str | os.PathLike[str],
    key: bytes | Verifier | None = None,
    *,
    expected_head: str | None = None,
    expected_count: int | None = None,
) -> VerifyResult:
    """Verify the JSONL audit file at ``path`` (host side).

    Damaged lines are reported, not raised; ``OSError`` (missing file ...)
    propagates. Record indexes in the messages are line numbers.
    """
    result = verify_records(
        _parse_lines(path),
        key,
        expected_head=expected_head,
        expected_count=expected_count,
    )
    if result.count == 0:  # every glsandbox log starts with its session_start record
        result.problems.append("the file holds no audit record (emptied, or not a glsandbox audit log)")
        result.ok = False
        result.first_bad = 1
    return result


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a JSONL audit file, oldest first (host side).

    Raises ``ValueError`` naming the file and line number for a line that is
    not a JSON object.
    """
    records: list[dict[str, Any]] = []
    for lineno, obj in enumerate(_parse_lines(path), start=1):
        if isinstance(obj, dict):
            records.append(obj)
            continue
        reason = obj.reason if isinstance(obj, _Unparsable) else f"a JSON {type(obj).__name__}, not an object"
        raise ValueError(f"{os.fspath(path)}: line {lineno}: {reason}")
    return records
