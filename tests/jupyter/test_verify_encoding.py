"""``glsandbox audit verify`` of notebooks whose bytes stress encoding: honest ones verify, edited
ones are named, none ends in a traceback.

A real ``glsandbox run`` (glsandbox kernel through nbclient, Ed25519-signed) of cells printing a lone
surrogate, NUL, U+2028/U+2029, a 300 000-character line, ints beyond a double's precision and NaN/
Infinity; then the file hand-edited: a UTF-8 byte-order mark, duplicate keys in the metadata, an
integer of 5000 digits, invalid UTF-8, escaped NUL and U+2028 spliced into an output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from ..escape.test_outside26_common import signed_run

pytestmark = pytest.mark.timeout(400)
CELLS = (
    "print('lone \\ud800 surrogate')",
    "print('nul \\x00 here')",
    "print('ls \\u2028 ps \\u2029')",
    "print('x' * 300000)",
    "display({'text/plain': 'm'}, metadata={'big': 2**80 + 1, 'f': 1.0000000000000002}, raw=True)",
    "display({'application/json': {'n': float('nan'), 'i': float('inf')}, 'text/plain': 'j'}, raw=True)",
    "float('nan'), 10**30 + 1",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = signed_run(tmp_path_factory.mktemp("encoding"), CELLS)
    return {**run, "bytes": run["out"].read_bytes()}


def _verify(run: dict[str, Any], name: str, data: bytes, *args: str) -> tuple[int, str]:
    path: Path = run["dir"] / f"{name}.ipynb"
    path.write_bytes(data)
    res = glsandbox_cli("audit", "verify", str(path), "--pubkey", run["pub"], *args)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    return res.returncode, res.stdout + res.stderr


def test_honest_stressing_content_verifies_strict(run: dict[str, Any]) -> None:
    code, out = _verify(run, "honest", run["bytes"], "--strict")
    assert code == 0, out


def test_bom_is_read_and_named(run: dict[str, Any]) -> None:
    code, out = _verify(run, "bom", b"\xef\xbb\xbf" + run["bytes"])
    assert code == 0, out
    assert "warning: the notebook file begins with a UTF-8 byte-order mark" in out
    code, out = _verify(run, "bom", b"\xef\xbb\xbf" + run["bytes"], "--strict")
    assert code == 1 and "--strict: the notebook file begins with a UTF-8 byte-order mark" in out, out


@pytest.mark.parametrize(
    ("anchor", "dup", "where"),
    [
        (b'"kernelspec": {', b'"kernelspec": {"name": "python3", "language": "python"}, ', "metadata.kernelspec"),
        (b'"nbformat": 4', b'"nbformat": 4, ', "nbformat"),
    ],
)
def test_duplicate_keys_are_named(run: dict[str, Any], anchor: bytes, dup: bytes, where: str) -> None:
    data: bytes = run["bytes"]
    at = data.rindex(anchor) if where != "nbformat" else data.index(anchor)
    edited = data[:at] + dup + data[at:]
    code, out = _verify(run, "dup", edited)
    assert code == 1, out
    assert f"the notebook file holds the key '{where}' twice" in out, out


def test_integer_of_5000_digits_is_named(run: dict[str, Any]) -> None:
    data: bytes = run["bytes"]
    edited = data.replace(b'"execution_count": 1,', b'"execution_count": ' + b"7" * 5000 + b",", 1)
    assert edited != data
    code, out = _verify(run, "huge", edited, "--strict")
    assert code == 1, out
    assert "integer(s) of more than 4300 digits (5000)" in out and "set_int_max_str_digits" not in out


def test_invalid_utf8_is_a_usage_error_saying_so(run: dict[str, Any]) -> None:
    data: bytes = run["bytes"]
    code, out = _verify(run, "utf8", data.replace(b"lone ", b"lone \xed\xa0\x80", 1))
    assert code == 2 and "not UTF-8 text (byte " in out, out


@pytest.mark.parametrize("spliced", [b"\\u0000", b"\\u2028", b"\\ud800"])
def test_spliced_characters_name_the_edited_output(run: dict[str, Any], spliced: bytes) -> None:
    data: bytes = run["bytes"]
    edited = data.replace(b"ps ", b"ps " + spliced, 1)
    assert edited != data
    code, out = _verify(run, "spliced", edited)
    assert code == 1 and "cell 3 (In [3]): output 1 edited after it ran" in out, out
