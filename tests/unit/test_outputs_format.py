"""Outputs format 2 and seal format 4 (review 11 findings 3, 4); older formats still check as they were made.

Format 2 hashes integers beyond 2**53 in JSON output data exactly and strips only ASCII whitespace from
base64 payloads. The golden digests below were computed by the previous release's code (seal format 3,
records without ``outputs_format``) on the same notebook: the current code must give them for format 1/3/2.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from glsandbox_kernel.audit.records import canonical_json
from glsandbox_kernel.notebook.evidence import (
    OUTPUTS_FORMAT,
    canonical_outputs,
    outputs_evidence,
    outputs_format,
    saved_outputs_evidence,
)
from glsandbox_kernel.notebook.seal import SEAL_FORMAT, check_seal, manifest, seal_notebook

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
BIG = 2**53 + 1
OUTPUTS: list[dict[str, Any]] = [
    {"output_type": "stream", "name": "stdout", "text": "accuracy: 0.51\n"},
    {
        "output_type": "display_data",
        "metadata": {"n": BIG},
        "data": {"image/png": PNG[:20] + "\n" + PNG[20:] + "\n", "text/plain": "<Image>"},
    },
    {
        "output_type": "display_data",
        "metadata": {},
        "data": {"application/json": {"n": BIG, "s": "\0int:1", "f": 0.5}, "text/plain": "{...}"},
    },
]
NB: dict[str, Any] = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "glsandbox"}},
    "cells": [
        {"cell_type": "markdown", "source": "# Report", "metadata": {}},
        {"cell_type": "code", "source": "x", "metadata": {}, "outputs": OUTPUTS, "execution_count": 1},
        {"cell_type": "raw", "source": "r", "metadata": {"raw_mimetype": "text/html"}},
    ],
}
# from the previous release (glsandbox_kernel at main df53d2a) on OUTPUTS and NB above
OLD_OUTPUTS_HASH = "6bfd29576621e7e92458b3249d8b13eab1d0cdf04f3fea9d94abfd3034851056"
OLD_MANIFEST = {
    3: "5665e8b825873d1e095bf8f64b46898b7e9a3c2169cbec70e4b6fb25ebb17916",
    2: "3d12a8a6712094b2ffb663267b89cd692d8ca372cf6ab997303ebf2b05db9d3d",
}


def _digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def _h(outputs: list[dict[str, Any]], fmt: int) -> str:
    """What a record or seal holds for ``outputs`` (the hash, not the canonical form)."""
    return _digest(canonical_outputs(outputs, fmt))


def _png_with(insert: str) -> list[dict[str, Any]]:
    outputs = copy.deepcopy(OUTPUTS)
    outputs[1]["data"]["image/png"] = PNG[:12] + insert + PNG[12:]
    return outputs


def _json_n(value: Any) -> list[dict[str, Any]]:
    outputs = copy.deepcopy(OUTPUTS)
    outputs[2]["data"]["application/json"]["n"] = value
    return outputs


def test_older_records_and_seals_hash_exactly_as_they_were_made() -> None:
    assert saved_outputs_evidence(OUTPUTS, None, 1)["outputs_hash"] == OLD_OUTPUTS_HASH
    assert outputs_format({}) == 1  # a record without outputs_format
    for fmt, digest in OLD_MANIFEST.items():
        assert _digest(manifest(NB, fmt)) == digest
    assert saved_outputs_evidence(OUTPUTS, None)["outputs_hash"] != OLD_OUTPUTS_HASH
    assert _digest(manifest(NB)) not in OLD_MANIFEST.values()


def test_new_records_and_seals_use_the_new_formats() -> None:
    evidence = outputs_evidence(OUTPUTS)
    assert evidence["outputs_format"] == OUTPUTS_FORMAT == 2 and outputs_format(evidence) == 2
    assert manifest(NB)["format"] == SEAL_FORMAT == 4
    for bogus in (True, "2", 99, 0):  # a value no release wrote reads as format 1 (the record is signed)
        assert outputs_format({"outputs_format": bogus}) == 1


def test_unicode_whitespace_in_base64_is_covered_in_format_2_only() -> None:
    for insert in ("\u3000", "\x1f", "\u00a0", "\u2028"):
        assert _h(_png_with(insert), 1) == _h(OUTPUTS, 1)  # the old weakness
        assert _h(_png_with(insert), 2) != _h(OUTPUTS, 2)
    for insert in (" ", "\t", "\r\n", "\f"):  # what base64 decoders skip: a re-wrap hashes the same
        assert _h(_png_with(insert), 2) == _h(OUTPUTS, 2)


def test_big_integers_are_covered_exactly_in_format_2_only() -> None:
    for other in (BIG - 1, float(BIG - 1)):
        assert _h(_json_n(other), 1) == _h(OUTPUTS, 1)  # the old weakness
        assert _h(_json_n(other), 2) != _h(OUTPUTS, 2)
    # no string poses as the big int, and a string starting with NUL stays distinct
    assert _h(_json_n(f"\0int:{BIG}"), 2) != _h(OUTPUTS, 2)
    assert _h(_json_n(f"\0\0int:{BIG}"), 2) != _h(_json_n(f"\0int:{BIG}"), 2)
    assert _h(_json_n(5), 2) != _h(_json_n("5"), 2)
    assert _h(_json_n(5), 2) == _h(_json_n(5.0), 2)  # small numbers: JCS as before
    meta = copy.deepcopy(OUTPUTS)
    meta[1]["metadata"]["n"] = BIG - 1  # output metadata too
    assert _h(meta, 2) != _h(OUTPUTS, 2)


def test_a_format_3_seal_still_verifies_and_a_format_4_seal_catches_the_png_edit() -> None:
    old = copy.deepcopy(NB)
    seal_notebook(old, None)
    old["metadata"]["glsandbox"]["manifest"] = manifest(old, 3)  # as the previous release wrote it
    from glsandbox_kernel.notebook.seal import seal_digest

    old["metadata"]["glsandbox"].pop("seal")
    old["metadata"]["glsandbox"]["seal"] = {"digest": seal_digest(old["metadata"]["glsandbox"])}
    problems, _notes, sealed = check_seal(old, None)
    assert sealed and not problems, problems
    new = copy.deepcopy(NB)
    seal_notebook(new, None)
    assert not check_seal(new, None)[0]
    new["cells"][1]["outputs"] = _png_with("\u3000")
    assert check_seal(new, None)[0]  # named: the seal covers the payload exactly
