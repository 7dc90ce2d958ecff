"""``glsandbox attest``: a DSSE-signed in-toto Statement of a real ``glsandbox run``.

Checked by ``glsandbox audit verify`` and, independently, by securesystemslib's
DSSE ``Envelope.verify`` (the library the in-toto Python implementation uses
for DSSE) with the Ed25519 public key loaded by the test itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import nbformat
import pytest

from ..conftest import glsandbox_cli as _glsandbox

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def attested(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("attest")
    private = base / "signing.key"
    assert _glsandbox("keygen", str(private)).returncode == 0
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("print(sum(range(10)))")]
    src = base / "n.ipynb"
    nbformat.write(nb, str(src))
    out = base / "n.out.ipynb"
    run = _glsandbox("run", str(src), "-o", str(out), "--sign-key", str(private))
    assert run.returncode == 0, run.stdout + run.stderr
    att = base / "n.intoto.jsonl"
    made = _glsandbox("attest", str(out), "-o", str(att), "--sign-key", str(private))
    assert made.returncode == 0, made.stdout + made.stderr
    return {"dir": base, "private": private, "public": base / "signing.key.pub", "out": out, "att": att}


def test_statement_names_the_notebook_and_the_controls(attested: dict[str, Any]) -> None:
    envelope = json.loads(attested["att"].read_text().splitlines()[0])
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    digest = hashlib.sha256(attested["out"].read_bytes()).hexdigest()
    assert statement["subject"][0] == {"name": "n.out.ipynb", "digest": {"sha256": digest}}
    predicate = statement["predicate"]
    assert predicate["verification"]["ok"] is True and predicate["verification"]["signatures_checked"] is True
    (session,) = predicate["sessions"].values()
    assert session["level"] == "moderate" and session["backend"] and session["controls"]["limits"]
    assert predicate["chain"][0]["head"] and predicate["violations"] == []
    assert predicate["environment"]["python"]  # the run's (glsandbox run records it)
    assert predicate["attester_environment"]["python"]  # the attesting machine's, under its own key
    assert predicate["verification"]["strict"] is True and predicate["verification"]["strict_problems"] == []


def test_glsandbox_audit_verify_checks_the_attestation(attested: dict[str, Any]) -> None:
    ok = _glsandbox("audit", "verify", str(attested["att"]), "--pubkey", str(attested["public"]))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    other = attested["dir"] / "other.key"
    assert _glsandbox("keygen", str(other)).returncode == 0
    wrong = _glsandbox("audit", "verify", str(attested["att"]), "--pubkey", str(other) + ".pub")
    assert wrong.returncode == 1 and "no valid signature" in wrong.stdout
    # the notebook changed after it was attested: its digest no longer matches
    changed = attested["dir"] / "changed"
    changed.mkdir()
    (changed / "n.out.ipynb").write_text(attested["out"].read_text().replace("45", "46"))
    (changed / "n.intoto.jsonl").write_text(attested["att"].read_text())
    res = _glsandbox("audit", "verify", str(changed / "n.intoto.jsonl"), "--pubkey", str(attested["public"]))
    assert res.returncode == 1 and "SHA-256 differs" in res.stdout


def test_an_independent_dsse_implementation_verifies_it(attested: dict[str, Any]) -> None:
    """securesystemslib (in-toto's DSSE library) with the public key the auditor holds."""
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    public = serialization.load_pem_public_key(attested["public"].read_bytes())
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keyid = hashlib.sha256(raw).hexdigest()[:16]  # the key id, computed by the auditor
    key = SSlibKey.from_crypto(public, keyid=keyid)  # type: ignore[arg-type]
    data = json.loads(attested["att"].read_text().splitlines()[0])
    accepted = Envelope.from_dict(json.loads(json.dumps(data))).verify([key], 1)
    assert keyid in accepted
    statement = json.loads(base64.b64decode(data["payload"]))
    assert statement["predicateType"] == "urn:glsandbox:predicate:notebook-run:v1"
    # an altered payload fails the same verifier
    forged = json.loads(json.dumps(data))
    statement["predicate"]["violations"] = [{"kind": "none"}]
    forged["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(forged).verify([key], 1)
