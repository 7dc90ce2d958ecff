"""Auditor session (2026-12-04): three edits of a JSONL audit log that ``audit verify`` passed as OK.

A real ``glsandbox run --audit run.jsonl --sign-key`` (glsandbox kernel through nbclient), then:

- a record line given the key ``event_type`` twice (``{"event_type":"violation","event_type":...}``):
  Python keeps the last key, so verify checked the signed record while a reader that keeps the
  first (as the notebook reader's docs say several do) shows a violation record, or hides one;
- a UTF-8 byte-order mark before the first line: ``json.loads`` of bytes skips it silently,
  although glsandbox never writes one (the file was re-encoded);
- the file emptied: "OK: 0 record(s), chain intact, signatures verified".

Judged from the host: ``glsandbox audit verify run.jsonl --pubkey`` exits 1 with a FAILED verdict
naming the line and what is wrong; the untouched log verifies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from .test_outside26_common import signed_run

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("jsonl")
    run = signed_run(base, ("print('total 42')", "21 * 2"), "--audit", str(base / "run.jsonl"))
    return {**run, "lines": (base / "run.jsonl").read_bytes().splitlines(keepends=True)}


def _verify(log: dict[str, Any], name: str, lines: list[bytes]) -> tuple[int, str]:
    path: Path = log["dir"] / f"{name}.jsonl"
    path.write_bytes(b"".join(lines))
    res = glsandbox_cli("audit", "verify", str(path), "--pubkey", log["pub"])
    said = res.stdout + res.stderr
    assert "Traceback" not in said, said[-1500:]
    return res.returncode, said


def test_the_untouched_log_verifies(log: dict[str, Any]) -> None:
    rc, said = _verify(log, "untouched", log["lines"])
    assert rc == 0 and "signatures verified" in said, said


def test_a_key_held_twice_is_named(log: dict[str, Any]) -> None:
    lines = list(log["lines"])
    assert lines[1].startswith(b'{"event_type":')
    lines[1] = b'{"event_type":"violation",' + lines[1][1:]
    rc, said = _verify(log, "duplicate", lines)
    assert rc == 1 and "FAILED" in said, said
    assert "record 2 (line 2)" in said and "'event_type' twice" in said, said


def test_a_byte_order_mark_is_named(log: dict[str, Any]) -> None:
    lines = list(log["lines"])
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    rc, said = _verify(log, "bom", lines)
    assert rc == 1 and "FAILED" in said and "byte-order mark" in said, said


def test_an_emptied_log_fails(log: dict[str, Any]) -> None:
    rc, said = _verify(log, "empty", [])
    assert rc == 1 and "FAILED" in said and "no audit record" in said, said
