"""Outside review (11th): two output edits the output hash cannot see, in a signed notebook.

1. Base64 payloads hashed without "whitespace", where whitespace is Python's
   Unicode ``\\s``. ``notebook/evidence.py:_canonical_data`` strips ``\\s+``
   from every non-text, non-JSON MIME value (``image/png`` ...) so that
   re-wrapped base64 lines hash the same. ``\\s`` also matches U+3000,
   U+00A0, U+2028 and the ASCII separators ``\\x1c``-``\\x1f``, which no base64
   decoder skips: the tamperer inserts one into the sealed PNG of a signed
   ``glsandbox run``. Measured: ``glsandbox audit verify --pubkey --strict``
   says OK; the PNG no longer decodes (``base64.b64decode`` raises, so
   does ``jupyter nbconvert --to markdown`` on the notebook; a browser's
   forgiving-base64 fails too, so the covered figure shows as a broken
   image). Severity: medium-low (a covered figure -- e.g. the plot showing
   the failure -- is made to vanish in every viewer while verify says OK).
   Fix: strip only the ASCII whitespace base64 allows (``[ \\t\\n\\r\\f]``,
   ``re.ASCII``), or hash the decoded bytes (refuse undecodable payloads).

2. Integers beyond 2**53 in JSON outputs. RFC 8785 writes them as the double
   JavaScript reads, so ``{"n": 9007199254740993}`` (what the sandbox
   displayed) and ``{"n": 9007199254740992}`` hash the same. Every Python
   reader of the file (nbconvert, ``glsandbox report``, papermill, pandas on
   the saved JSON) sees the tamperer's number. Measured: verify --strict OK
   after the edit. Severity: low (only big integers in JSON MIME data and
   output metadata). Fix: in output data, hash integers beyond 2**53 exactly
   (as their decimal text) when they are Python ints; or have verify warn
   (--strict fail) on any integer beyond 2**53 in covered data.
"""

from __future__ import annotations

import base64
import binascii
import subprocess
import sys
from pathlib import Path

import pytest

from .test_outside10_common import BIG, code_cell, save, signed_notebook, verify

pytestmark = pytest.mark.timeout(500)


def test_breaking_a_sealed_png_is_named_by_verify(tmp_path: Path) -> None:
    nb, pub = signed_notebook(tmp_path)
    png = next(o for o in code_cell(nb, 1)["outputs"] if "image/png" in o.get("data", {}))
    data = png["data"]["image/png"]
    png["data"]["image/png"] = data[:12] + "\u3000\x1f" + data[12:]
    tampered = save(nb, tmp_path / "png.ipynb")
    with pytest.raises((ValueError, binascii.Error)):
        base64.b64decode(png["data"]["image/png"])  # the figure no longer decodes
    export = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "markdown", str(tampered), "--output-dir", str(tmp_path / "md")],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert export.returncode != 0  # nbconvert cannot extract it either
    result = verify(tampered, pub)
    assert result.returncode != 0, "verify --strict passed a notebook whose sealed PNG was broken:\n" + result.stdout


def test_changing_a_big_integer_in_a_json_output_is_named_by_verify(tmp_path: Path) -> None:
    nb, pub = signed_notebook(tmp_path)
    shown = next(o for o in code_cell(nb, 1)["outputs"] if "application/json" in o.get("data", {}))
    assert shown["data"]["application/json"]["n"] == BIG
    shown["data"]["application/json"]["n"] = BIG - 1  # what a Python reader now shows
    result = verify(save(nb, tmp_path / "big.ipynb"), pub)
    assert result.returncode != 0, f"verify --strict passed {BIG} rewritten as {BIG - 1}:\n" + result.stdout
