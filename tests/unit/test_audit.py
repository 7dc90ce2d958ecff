"""Tests for glsandbox_kernel.audit: hash chain, sinks, verification, CLI (host side).

Real files in tmp_path and real OS processes; no mocks.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import glsandbox_kernel.audit as audit
from glsandbox_kernel.audit import (
    GENESIS_HASH,
    AuditLog,
    EventType,
    JsonlFileSink,
    LoggingSink,
    MemorySink,
    add_audit_parser,
    canonical_json,
    compute_record_hash,
    load_key,
    provenance_hash,
    read_jsonl,
    run_audit,
    sign,
    verify_file,
    verify_records,
)

REPO = Path(__file__).resolve().parents[2]
KEY = b"test-audit-key-0123456789"

_EVENTS = [
    EventType.SESSION_START,
    EventType.EXECUTION_SUCCESS,
    EventType.EXECUTION_ERROR,
    EventType.VIOLATION,
    EventType.TIMEOUT,
    EventType.SESSION_END,
]


def _emit(log: AuditLog, event: EventType | str = EventType.EXECUTION_SUCCESS, **kw: Any) -> dict[str, Any]:
    kw.setdefault("isolation_type", "basic")
    kw.setdefault("sandbox_mode", "enforcing")
    kw.setdefault("security_level", "strict")
    return log.emit(event, **kw)


def _write_log(path: Path, n: int, key: bytes | None = None) -> AuditLog:
    log = AuditLog(session_id="session-abcdef", sinks=[JsonlFileSink(path)], key=key)
    for i in range(n):
        _emit(
            log,
            _EVENTS[i % len(_EVENTS)],
            provenance_hash=provenance_hash(f"x = {i}", b"", {"level": "strict"}),
            execution_time=0.001 * i,
            metrics={"cpu_time": 0.01 * i, "peak_memory_bytes": 1000 + i},
            violations=[{"kind": "syscall", "detail": "ptrace", "trusted": True}] if i % 5 == 0 else None,
            extra={"cell": i},
        )
    log.close()
    return log


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("GLSANDBOX_AUDIT_KEY", None)
    return env


# -- records -----------------------------------------------------------------


def test_public_api_is_pinned() -> None:
    expected = {
        "AuditLog", "AuditSink", "EventType", "GENESIS_HASH", "JsonlFileSink",
        "LoggingSink", "MemorySink", "VerifyResult", "add_audit_parser",
        "canonical_json", "compute_record_hash", "load_key", "provenance_hash",
        "read_jsonl", "run_audit", "sign", "verify_file", "verify_records",
    }  # fmt: skip
    exported = {name for name in vars(audit) if not name.startswith("_")}
    assert expected <= exported
    assert exported - expected <= {"canonical", "cli", "cluster", "keys", "log", "records", "sinks", "verify"}


def test_event_type_values() -> None:
    assert [e.value for e in EventType] == [
        "session_start", "execution_success", "execution_error", "timeout",
        "memory_exceeded", "violation", "escape_attempt", "worker_crashed",
        "fallback", "session_end",
    ]  # fmt: skip
    assert GENESIS_HASH == "0" * 64


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


# RFC 8785 appendix B number vectors (IEEE 754 bit pattern -> ECMAScript text).
@pytest.mark.parametrize(
    ("bits", "text"),
    [
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_jcs_numbers_are_written_as_ecmascript_does(bits: str, text: str) -> None:
    import struct

    from glsandbox_kernel.audit.canonical import js_number

    assert js_number(struct.unpack(">d", bytes.fromhex(bits))[0]) == text


def test_the_fast_jcs_path_writes_every_float_as_the_reference_does() -> None:
    """Floats where repr and ECMAScript disagree (a warm call's 80 us execution_time, 1e16 and up)
    stay on the fast path, written as :func:`js_number` writes them; text that once looked like the
    old path's placeholders is plain text."""
    import struct

    from glsandbox_kernel.audit.canonical import jcs_dumps
    from glsandbox_kernel.audit.records import fast_canonical_json

    for bits in ("0000000000000001", "3eb0c6f7a0b5ed8c", "3eb0c6f7a0b5ed8d", "becbf647612f3696", "44b52d02c7e14af6"):
        value = struct.unpack(">d", bytes.fromhex(bits))[0]
        body = {"z": value, "a": [8.3e-05, {"c": -value}], "s": '\x01 "', "again": value}
        assert fast_canonical_json(body) == jcs_dumps(body)
    for lookalike in ("\x000", 'x"\x001', "\x00"):
        body = {"execution_time": 8.3e-05, "s": lookalike}
        assert fast_canonical_json(body) == jcs_dumps(body) == canonical_json(body)


def test_the_fast_jcs_path_agrees_with_the_reference_or_gives_up() -> None:
    """:mod:`.audit._jcs_fast` (sealing's shortcut) writes :func:`jcs_dumps`'s bytes wherever it answers,
    over generated JSON (non-ASCII keys, big ints, integral and tiny floats, nesting), and answers
    None exactly where a shortcut does not hold: non-ASCII keys, ints past 2**53, lone surrogates,
    non-JSON types and subclasses (the reference decides those)."""
    import enum

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from glsandbox_kernel.audit._jcs_fast import encode
    from glsandbox_kernel.audit.canonical import jcs_dumps

    floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([60.0, -0.0, 2.0**53, 1e16, 1e21, 3e-5])
    leaves = st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60) | floats | st.text()
    keys = st.text(max_size=4) | st.sampled_from(["calls", "seq", "é", "\U0001f600", "\uffff", "A", "a"])
    values = st.recursive(leaves, lambda inner: st.lists(inner) | st.dictionaries(keys, inner), max_leaves=25)

    @settings(max_examples=400, deadline=None)
    @given(values)
    def check(value: Any) -> None:
        fast = encode(value)
        try:
            ref = jcs_dumps(value)
            ref.decode("utf-8")
        except UnicodeError:
            assert fast is None
            return
        assert fast is None or fast == ref
        if fast is None:  # only for what the shortcut leaves to the reference
            assert _beyond_shortcut(value), value

    check()

    class Kind(enum.StrEnum):
        A = "a"

    for odd in ({"k": Kind.A}, {"k": True.__class__}, {1: 2}, [2**53 + 1], {"k": float("nan")}):
        assert encode(odd) is None
    deep: Any = 0
    for _ in range(70):
        deep = [deep]
    assert encode(deep) is None and encode({"a": "\ud800"}) is None


def _beyond_shortcut(value: Any) -> bool:
    """A key that is not ASCII or an int past 2**53 somewhere in ``value``."""
    if isinstance(value, dict):
        return any(not k.isascii() or _beyond_shortcut(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_beyond_shortcut(v) for v in value)
    return type(value) is int and abs(value) > 2**53


def test_jcs_survives_a_javascript_round_trip() -> None:
    """JupyterLab (JSON.parse + JSON.stringify) writes 60.0 as 60 and reorders nothing we hash."""
    python = {"execution_time": 60.0, "peak": 1.5e-7, "big": 2**60, "s": "é\u2028\x7f\n", "\U0001f600": 1, "\uffff": 2}
    javascript = {
        "execution_time": 60,
        "peak": 1.5e-7,
        "big": 1152921504606846976,
        "s": "é\u2028\x7f\n",
        "\uffff": 2,
        "\U0001f600": 1,
    }
    assert canonical_json(python) == canonical_json(javascript)
    # keys sort by UTF-16 code units: the astral U+1F600 (surrogates D83D..) sorts before U+FFFF
    assert canonical_json(python).index("\U0001f600".encode()) < canonical_json(python).index("\uffff".encode())
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_jcs_agrees_with_an_independent_implementation() -> None:
    """The rfc8785 package (Trail of Bits) as the second implementation, over generated JSON."""
    rfc8785 = pytest.importorskip("rfc8785", reason="rfc8785 is a test dependency")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    safe_ints = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    floats = st.floats(allow_nan=False, allow_infinity=False)
    leaves = st.none() | st.booleans() | safe_ints | floats | st.text()
    values = st.recursive(leaves, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)

    @settings(max_examples=300, deadline=None)
    @given(values)
    def check(value: Any) -> None:
        assert canonical_json(value) == rfc8785.dumps(value)

    check()


def test_a_format_1_record_still_verifies() -> None:
    """Records written before JCS (no ``format``) are checked with the old encoding."""
    from glsandbox_kernel.audit.records import legacy_canonical_json

    body = {"seq": 0, "prev_hash": GENESIS_HASH, "session_id": "old", "execution_time": 0.5}
    record = {**body, "record_hash": hashlib.sha256(legacy_canonical_json(body)).hexdigest()}
    assert verify_records([record]).ok
    record["execution_time"] = 0.25
    assert not verify_records([record]).ok


def test_records_name_their_format() -> None:
    record = _emit(AuditLog(session_id="s", sinks=[]))
    assert record["format"] == 2


def test_provenance_hash_separates_parts_and_ignores_key_order() -> None:
    base = provenance_hash(b"ab", b"c", {"x": 1, "y": 2})
    assert len(base) == 64
    assert base == provenance_hash("ab", "c", {"y": 2, "x": 1})
    assert base != provenance_hash(b"a", b"bc", {"x": 1, "y": 2})
    assert base != provenance_hash(b"ab", b"c", {"x": 1, "y": 3})
    assert base != provenance_hash(b"abc", b"", {"x": 1, "y": 2})


def test_record_hash_and_signature_definitions() -> None:
    log = AuditLog(session_id="s", sinks=[], key=KEY)
    record = _emit(log)
    body = {k: v for k, v in record.items() if k not in ("record_hash", "signature")}
    assert record["record_hash"] == hashlib.sha256(canonical_json(body)).hexdigest()
    assert record["record_hash"] == compute_record_hash(record)
    assert record["signature"] == sign(record["record_hash"], KEY)
    assert record["seq"] == 0
    assert record["prev_hash"] == GENESIS_HASH


def test_record_fields() -> None:
    log = AuditLog(session_id="sess-1", sinks=[])
    record = _emit(
        log,
        "execution_error",
        provenance_hash="ab" * 32,
        execution_time=1.5,
        metrics={"cpu_time": 0.5},
        violations=[{"kind": "network", "detail": "10.0.0.1"}],
        extra={"fallback": True},
    )
    assert set(record) == {
        "format", "timestamp", "event_type", "session_id", "isolation_type", "sandbox_mode",
        "security_level", "provenance_hash", "execution_time", "metrics",
        "violations", "extra", "seq", "prev_hash", "record_hash",
    }  # fmt: skip
    assert record["event_type"] == "execution_error"
    assert record["session_id"] == "sess-1"
    assert abs(record["timestamp"] - time.time()) < 60
    assert record["violations"] == [{"kind": "network", "detail": "10.0.0.1"}]
    plain = _emit(log)
    assert plain["metrics"] is None
    assert plain["violations"] == []
    assert plain["extra"] == {}
    assert plain["seq"] == 1
    assert plain["prev_hash"] == record["record_hash"]
    assert log.head == plain["record_hash"]
    assert log.records == [record, plain]


class _Color(enum.Enum):
    RED = "red"


def test_awkward_values_are_normalised_and_still_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(session_id="s", sinks=[JsonlFileSink(path)])
    record = _emit(
        log,
        isolation_type=_Color.RED,
        execution_time=float("nan"),
        metrics={"cpu": float("inf"), 10: 1, 9: 2, "tuple": (1, 2)},
        extra={"path": tmp_path, "color": _Color.RED, "bytes": b"\x00\xff", "obj": object()},
    )
    log.close()
    assert record["isolation_type"] == "red"
    assert record["execution_time"] is None
    assert record["metrics"] == {"cpu": None, "10": 1, "9": 2, "tuple": [1, 2]}
    assert record["extra"]["path"] == str(tmp_path)
    assert record["extra"]["bytes"] == "00ff"
    assert read_jsonl(path) == [record]
    assert verify_file(path).ok


def test_unknown_event_type_is_refused() -> None:
    log = AuditLog(session_id="s", sinks=[])
    with pytest.raises(ValueError, match="cell_start"):
        _emit(log, "cell_start")


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        AuditLog(session_id="s", sinks=[], key=b"")


# -- sinks -------------------------------------------------------------------


def test_file_sink_creates_private_file_and_parent(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "audit.jsonl"
    with JsonlFileSink(path) as sink:
        sink.write({"seq": 0, "record_hash": "x"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b'{"record_hash":"x","seq":0}\n'


def test_file_sink_refuses_writes_after_close(tmp_path: Path) -> None:
    sink = JsonlFileSink(tmp_path / "a.jsonl")
    sink.close()
    sink.close()
    with pytest.raises(ValueError, match="closed"):
        sink.write({})


def test_memory_sink_keeps_independent_copies() -> None:
    sink = MemorySink()
    log = AuditLog(session_id="s", sinks=[sink])
    metrics = {"cpu": 1.0}
    record = _emit(log, metrics=metrics)
    record["extra"]["tamper"] = True
    metrics["cpu"] = 2.0
    assert sink.records[0]["extra"] == {}
    assert sink.records[0]["metrics"] == {"cpu": 1.0}
    assert verify_records(sink.records).ok
    assert verify_records(log.records).ok


def test_logging_sink_logs_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(session_id="0123456789abcdef", sinks=[LoggingSink()])
    with caplog.at_level(logging.INFO, logger="glsandbox.audit"):
        _emit(log, EventType.VIOLATION, provenance_hash="f" * 64)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert caplog.records[0].levelno == logging.INFO
    assert "violation" in message
    assert "01234567" in message
    assert "ffffffffffff" in message


def test_mirror_sinks_receive_every_record(tmp_path: Path) -> None:
    memory = MemorySink()
    mirror = tmp_path / "mirror.jsonl"
    log = AuditLog(session_id="s", sinks=[JsonlFileSink(tmp_path / "main.jsonl"), memory, JsonlFileSink(mirror)])
    for _ in range(3):
        _emit(log)
    log.close()
    assert memory.records == log.records == read_jsonl(tmp_path / "main.jsonl")
    assert read_jsonl(mirror) == log.records
    assert verify_file(mirror).ok


# -- chain -------------------------------------------------------------------


def test_long_chain_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 300)
    result = verify_file(path)
    assert result.ok, result.problems
    assert result.count == 300
    assert result.first_bad is None
    assert result.head == log.head
    records = read_jsonl(path)
    assert [r["seq"] for r in records] == list(range(300))
    assert records == log.records


def test_chain_continues_across_logs_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = _write_log(path, 5)
    second = AuditLog(session_id="second", sinks=[JsonlFileSink(path)])
    assert second.next_seq == 5
    assert second.head == first.head
    record = _emit(second)
    second.close()
    assert record["seq"] == 5
    assert record["prev_hash"] == first.head
    assert verify_file(path).ok
    assert verify_file(path).count == 6


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text('{"hello": "world"}\n')
    with pytest.raises(ValueError, match="not a glsandbox audit log"):
        AuditLog(session_id="s", sinks=[JsonlFileSink(path)])


def test_unfinished_last_line_is_terminated_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    with path.open("ab") as handle:
        handle.write(b'{"timestamp": 1.0, "event')  # a crash mid-write
    log = AuditLog(session_id="s", sinks=[JsonlFileSink(path)])
    record = _emit(log)
    log.close()
    assert record["seq"] == 3
    lines = _lines(path)
    assert len(lines) == 5
    assert json.loads(lines[4]) == record
    result = verify_file(path)
    assert not result.ok
    assert result.first_bad == 4
    assert result.problems[0].startswith("record 4 (line 4): not valid JSON")


# -- tamper detection ------------------------------------------------------


def _tamper(path: Path, change: Any) -> None:
    lines = _lines(path)
    change(lines)
    path.write_bytes(b"".join(lines))


def test_edited_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 10)

    def edit(lines: list[bytes]) -> None:
        record = json.loads(lines[2])
        record["event_type"] = "execution_success"
        record["execution_time"] = 99.0
        lines[2] = canonical_json(record) + b"\n"

    _tamper(path, edit)
    result = verify_file(path)
    assert not result.ok
    assert result.first_bad == 3
    assert result.problems == ["record 3 (line 3): record_hash does not match its contents (edited)"]


def test_edited_and_rehashed_record_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 10)

    def edit(lines: list[bytes]) -> None:
        record = json.loads(lines[2])
        record["execution_time"] = 123.0
        record["record_hash"] = compute_record_hash(record)
        lines[2] = canonical_json(record) + b"\n"

    _tamper(path, edit)
    result = verify_file(path)
    assert result.first_bad == 4
    assert result.problems[0].startswith("record 4 (line 4): prev_hash does not match the record_hash of record 3")
    assert "edited and re-hashed" in result.problems[0]


def test_deleted_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 10)
    _tamper(path, lambda lines: lines.pop(2))
    result = verify_file(path)
    assert not result.ok
    assert result.first_bad == 3
    assert result.count == 9
    assert "record 3 (line 3): seq is 3, expected 2: 1 record(s) missing before it (deleted)" in (result.problems)


def test_deleted_first_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 4)
    _tamper(path, lambda lines: lines.pop(0))
    result = verify_file(path)
    assert result.first_bad == 1
    assert any("missing at the start" in p for p in result.problems)
    assert any("genesis" in p for p in result.problems)


def test_inserted_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 6)

    def insert(lines: list[bytes]) -> None:
        # A well-formed forgery linked to record 3, claiming seq 3.
        previous = json.loads(lines[2])
        forged = dict(json.loads(lines[3]))
        forged.update(event_type="execution_success", violations=[], prev_hash=previous["record_hash"])
        forged["record_hash"] = compute_record_hash(forged)
        lines.insert(3, canonical_json(forged) + b"\n")

    _tamper(path, insert)
    result = verify_file(path)
    assert not result.ok
    assert result.first_bad == 5
    assert result.problems[0] == (
        "record 5 (line 5): seq is 3, expected 4: out of order (a record was inserted or reordered)"
    )


def test_reordered_records_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 8)

    def swap(lines: list[bytes]) -> None:
        lines[3], lines[4] = lines[4], lines[3]

    _tamper(path, swap)
    result = verify_file(path)
    assert result.first_bad == 4
    assert result.problems[0].startswith("record 4 (line 4): seq is 4, expected 3")
    assert any("reordered" in p for p in result.problems)


def test_truncation_in_the_middle_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 8)

    def cut(lines: list[bytes]) -> None:
        lines[2] = lines[2][:40] + b"\n"

    _tamper(path, cut)
    result = verify_file(path)
    assert result.first_bad == 3
    assert result.problems[0].startswith("record 3 (line 3): not valid JSON")
    assert "truncated or damaged line" in result.problems[0]
    with pytest.raises(ValueError, match=r"line 3: not valid JSON"):
        read_jsonl(path)


def test_truncation_at_the_end_needs_the_expected_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 10)
    _tamper(path, lambda lines: lines.__delitem__(slice(8, None)))

    # Undetectable from the file alone: a shorter chain is still a chain.
    assert verify_file(path).ok

    result = verify_file(path, expected_head=log.head)
    assert not result.ok
    assert result.first_bad == 9
    assert "truncated" in result.problems[0]

    result = verify_file(path, expected_count=log.next_seq)
    assert not result.ok
    assert "records 9..10 are missing (truncated at the end)" in result.problems[0]


def test_grown_chain_still_contains_the_expected_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 3)
    later = AuditLog(session_id="later", sinks=[JsonlFileSink(path)])
    _emit(later)
    later.close()
    assert verify_file(path, expected_head=log.head, expected_count=3).ok


# -- signatures --------------------------------------------------------------


def test_signed_chain_verifies_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 20, key=KEY)
    result = verify_file(path, KEY)
    assert result.ok, result.problems
    assert result.notes == []


def test_wrong_key_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 5, key=KEY)
    result = verify_file(path, b"another key")
    assert not result.ok
    assert result.first_bad == 1
    assert result.problems[0] == (
        "record 1 (line 1): signature does not match: the record is HMAC-signed (hmac-sha256, a shared secret) with a bad signature (wrong key, or forged)"
    )


def test_signatures_without_key_are_a_note(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 5, key=KEY)
    result = verify_file(path)
    assert result.ok
    assert result.problems == []
    assert result.notes == [
        "records are HMAC-signed (hmac-sha256, a shared secret) but no key was given (--key FILE or "
        "$GLSANDBOX_AUDIT_KEY): signatures not checked"
    ]


def test_missing_signature_fails_when_a_key_is_given(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    result = verify_file(path, KEY)
    assert result.first_bad == 1
    assert "record 1 (line 1): signature missing (a key was given)" in result.problems


def test_rehashed_forgery_fails_the_signature(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 1, key=KEY)

    def forge(lines: list[bytes]) -> None:
        record = json.loads(lines[0])
        record["execution_time"] = 42.0
        record["record_hash"] = compute_record_hash(record)
        lines[0] = canonical_json(record) + b"\n"

    _tamper(path, forge)
    assert verify_file(path).ok  # without the key, a re-hashed single record passes
    result = verify_file(path, KEY)
    assert not result.ok
    assert "signature does not match" in result.problems[0]


def test_load_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"  secret-key\n")
    monkeypatch.setenv("GLSANDBOX_AUDIT_KEY", "from-env\n")
    assert load_key(key_file) == b"secret-key"
    assert load_key() == b"from-env"
    monkeypatch.delenv("GLSANDBOX_AUDIT_KEY")
    assert load_key() is None
    assert load_key(env_var="GLSANDBOX_TEST_UNSET_VARIABLE") is None
    (tmp_path / "empty").write_bytes(b"\n")
    with pytest.raises(ValueError, match="empty"):
        load_key(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        load_key(tmp_path / "missing")


# -- processes ---------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from glsandbox_kernel.audit import AuditLog, JsonlFileSink
    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = AuditLog(session_id=name, sinks=[JsonlFileSink(path)], key=b"k")
    sys.stdin.readline()  # start together
    for i in range(count):
        log.emit("execution_success", isolation_type="basic", sandbox_mode="enforcing",
                 security_level="strict", extra={"i": i})
    log.close()
    """
)


def test_concurrent_processes_extend_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    writers, per_writer = 4, 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), f"writer-{n}", str(per_writer)],
            stdin=subprocess.PIPE,
            env=_env(),
        )
        for n in range(writers)
    ]
    time.sleep(0.3)  # let every writer open the file and read its (empty) tail
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    assert [proc.wait(timeout=60) for proc in procs] == [0] * writers

    result = verify_file(path, b"k")
    assert result.ok, result.problems[:5]
    records = read_jsonl(path)
    assert [r["seq"] for r in records] == list(range(writers * per_writer))
    for n in range(writers):
        mine = [r["extra"]["i"] for r in records if r["session_id"] == f"writer-{n}"]
        assert mine == list(range(per_writer))


def test_records_survive_an_abrupt_exit(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl"
    script = textwrap.dedent(
        """
        import os, sys
        from glsandbox_kernel.audit import AuditLog, JsonlFileSink
        log = AuditLog(session_id="doomed", sinks=[JsonlFileSink(sys.argv[1])])
        for event in ("session_start", "execution_success", "worker_crashed"):
            log.emit(event, isolation_type="basic", sandbox_mode="enforcing",
                     security_level="strict")
        os._exit(3)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], env=_env(), timeout=60)
    assert proc.returncode == 3
    records = read_jsonl(path)
    assert [r["event_type"] for r in records] == ["session_start", "execution_success", "worker_crashed"]
    assert verify_file(path).ok


# -- CLI ---------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glsandbox")
    add_audit_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["audit", *argv])


def test_cli_verify_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 5, key=KEY)
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    args = _parse("verify", str(path), "--key", str(key_file))
    assert args.func is run_audit
    assert run_audit(args) == 0
    out = capsys.readouterr().out
    assert "OK" in out
    assert "5 record(s)" in out
    assert "signatures verified" in out
    assert log.head in out


def test_cli_verify_broken_names_the_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 6)
    _tamper(path, lambda lines: lines.pop(3))
    assert run_audit(_parse("verify", str(path))) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "broken at record 4 (line 4)" in out
    assert "record 4 (line 4): seq is 4, expected 3" in out


def test_cli_verify_expected_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 4)
    _tamper(path, lambda lines: lines.pop())
    assert run_audit(_parse("verify", str(path), "--expected-head", log.head)) == 1
    assert "truncated" in capsys.readouterr().out


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_audit(_parse("verify", str(tmp_path / "missing.jsonl"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "missing.jsonl" in err
    assert "No such file" in err

    path = tmp_path / "audit.jsonl"
    _write_log(path, 1)
    assert run_audit(_parse("verify", str(path), "--key", str(tmp_path / "nokey"))) == 2
    assert "cannot read key file" in capsys.readouterr().err

    assert run_audit(_parse("show", str(tmp_path))) == 2
    assert "cannot read" in capsys.readouterr().err

    assert run_audit(argparse.Namespace()) == 2


def test_cli_show_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(session_id="evil\x1b[31m\x9bsession", sinks=[JsonlFileSink(path)])
    _emit(log, EventType.SESSION_START)
    _emit(log, EventType.VIOLATION, execution_time=0.25, violations=[{"kind": "syscall"}] * 2)
    log.close()

    assert run_audit(_parse("show", str(path))) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SEQ", "TIME", "(UTC)"]
    assert "session_start" in lines[1]
    assert "violation" in lines[2]
    assert "0.250s" in lines[2]
    assert lines[2].rstrip().endswith("2")
    assert "\x1b" not in out
    assert "\x9b" not in out

    assert run_audit(_parse("show", str(path), "--json")) == 0
    out = capsys.readouterr().out
    assert "\x9b" not in out
    shown = [json.loads(line) for line in out.splitlines()]
    assert shown == read_jsonl(path)


def test_cli_in_a_subprocess_never_prints_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 5)
    script = textwrap.dedent(
        """
        import argparse, sys
        from glsandbox_kernel.audit.cli import add_audit_parser, run_audit
        parser = argparse.ArgumentParser(prog="glsandbox")
        add_audit_parser(parser.add_subparsers(dest="command"))
        sys.exit(run_audit(parser.parse_args(sys.argv[1:])))
        """
    )

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, "audit", *argv],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = cli("verify", str(path))
    assert ok.returncode == 0, ok.stderr
    _tamper(path, lambda lines: lines.__setitem__(1, lines[1].replace(b"session-abcdef", b"session-abcdeX")))
    broken = cli("verify", str(path))
    assert broken.returncode == 1
    assert "record 2 (line 2): record_hash does not match its contents (edited)" in broken.stdout
    missing = cli("verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr + broken.stderr + ok.stderr
    assert missing.stderr.strip().count("\n") == 0


def test_a_binary_key_reaches_the_kernel(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`glsandbox run --key FILE` hands its kernel the key as a file; random bytes (NUL, non-UTF-8) survive."""
    import os

    from glsandbox_kernel.audit import load_key

    raw = bytes(range(256)).strip()
    path = tmp_path / "k"
    path.write_bytes(raw)
    key = load_key(path)
    assert key == raw
    monkeypatch.setitem(os.environ, "GLSANDBOX_AUDIT_KEY_FILE", str(path))  # as `glsandbox run` passes it
    monkeypatch.setitem(os.environ, "GLSANDBOX_AUDIT_KEY", "another key")
    assert load_key() == raw
