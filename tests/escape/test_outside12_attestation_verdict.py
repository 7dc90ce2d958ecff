"""Outside review (13th): a verified attestation does not tell the story ``verify --strict`` tells.

``glsandbox attest`` (``notebook/attest.py: build_statement``) records
``verify_notebook(nb, verifier)`` without ``strict``, and ``glsandbox audit verify
X.intoto.jsonl`` (``verify_attestation_cli``) turns a statement whose notebook did not verify
into a note only.

Attacks / failures measured on a real signed ``glsandbox run`` output:

1. The notebook's markdown verdict is rewritten (verify: FAILED, "source changed after the
   notebook was sealed"). ``glsandbox attest --sign-key`` still writes the attestation (exit 1),
   and ``glsandbox audit verify tampered.intoto.jsonl --pubkey`` prints ``OK: ... signature
   verified`` and exits 0; the failure is a ``note:`` line. A CI gate on the attestation passes.
2. A ``remove-output`` tag on the cell that printed a stderr warning (``nbconvert``/Jupyter Book
   drop it from exports): ``verify --strict`` FAILS; the attestation's predicate says
   ``verification.ok: true`` with no problem (only a warning), and ``glsandbox report`` exits 0.

Severity: medium-low (an attestation, the artefact meant for third parties, says OK for a
notebook the verifier fails; nothing in the statement says the check was not strict).
Fix (suggested): ``audit verify X.intoto.jsonl`` fails (exit 1) when the predicate's
``verification.ok`` is false (or gates on it with a flag); ``attest`` records a strict verdict
(``verify_notebook(..., strict=True)``, or both verdicts with a ``strict`` field) and refuses
to sign a failing notebook unless asked (``--allow-failed``); ``report`` shows the strict verdict.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside10_common import code_cell, save, signed_notebook, verify

pytestmark = pytest.mark.timeout(500)


def _statement(path: Path) -> dict:
    envelope = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    return json.loads(base64.b64decode(envelope["payload"]))


def test_an_attestation_of_a_tampered_notebook_does_not_verify_ok(tmp_path: Path) -> None:
    nb, pub = signed_notebook(tmp_path)
    key = tmp_path / "signing.key"
    nb["cells"][0]["source"] = "# Report\nAll checks **passed**, reviewed."
    tampered = save(nb, tmp_path / "tampered.ipynb")
    assert verify(tampered, pub).returncode == 1  # the notebook itself fails
    att = tmp_path / "tampered.intoto.jsonl"
    glsandbox_cli("attest", str(tampered), "--sign-key", str(key), "-o", str(att))
    assert _statement(att)["predicate"]["verification"]["ok"] is False  # the statement knows
    checked = glsandbox_cli("audit", "verify", str(att), "--pubkey", str(pub))
    assert checked.returncode != 0, (
        "audit verify of an attestation whose notebook FAILED verification says OK:\n" + checked.stdout
    )


def test_an_attestation_does_not_say_ok_for_a_notebook_strict_fails(tmp_path: Path) -> None:
    nb, pub = signed_notebook(tmp_path)
    key = tmp_path / "signing.key"
    code_cell(nb, 0).setdefault("metadata", {}).setdefault("tags", []).append("remove-output")
    tagged = save(nb, tmp_path / "tagged.ipynb")
    strict = verify(tagged, pub)
    assert strict.returncode == 1 and "--strict" in strict.stdout, strict.stdout
    att = tmp_path / "tagged.intoto.jsonl"
    made = glsandbox_cli("attest", str(tagged), "--sign-key", str(key), "-o", str(att))
    verification = _statement(att)["predicate"]["verification"]
    assert made.returncode != 0 or not verification["ok"] or verification.get("strict") is False, (
        f"attest signed 'ok: true' for a notebook verify --strict fails: {verification}"
    )
