"""Outside review (8th): ``audit verify --pubkey FILE`` takes a public key it cannot parse as an HMAC secret.

Attack: the evidence is signed with Ed25519 so that an auditor holding only
the public key "verifies and cannot forge" (``audit/keys.py``). The public
key is public: the tamperer has it too. ``load_verifier`` hands the
``--pubkey`` file to ``verifier_from_bytes``, which treats anything that does
not start with ``-----BEGIN PUBLIC KEY-----`` as an HMAC secret. A public key
in the other common encodings -- OpenSSH's ``ssh-ed25519 AAAA...`` line (what
``ssh-keygen -y`` and most key listings give), or the PEM saved with a UTF-8
byte-order mark (Windows editors) -- is then an HMAC key whose value everyone
knows: the tamperer rewrites the records, signs each ``record_hash`` with
HMAC-SHA256 keyed by the public file's bytes, and ``glsandbox audit verify
--pubkey`` prints ``OK ... signatures verified`` and exits 0. The same holds
for notebooks (records and the seal go through the same verifier).

Judged from the host: a log signed with HMAC keyed by the public key's bytes
does not verify with ``--pubkey``; a ``--pubkey`` file that is not an Ed25519
public key is refused (exit 2) or the log fails (exit 1), never OK.

Fix (suggested): ``--pubkey`` accepts only an Ed25519 public key (PEM, and
perhaps OpenSSH parsed as such) and fails with a usage error otherwise; in
``verifier_from_bytes``, refuse material that looks like any public key or
PEM block (``-----BEGIN``, ``ssh-ed25519``, a BOM) instead of falling back to HMAC.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from glsandbox_kernel.audit import AuditLog
from glsandbox_kernel.audit.keys import HmacKey, keygen
from glsandbox_kernel.audit.sinks import JsonlFileSink

from ..conftest import glsandbox_cli

pytestmark = pytest.mark.timeout(120)


def _public_forms(pub_pem: bytes) -> dict[str, bytes]:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(pub_pem)
    openssh = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return {"openssh": openssh + b" analyst@lab\n", "pem-with-bom": b"\xef\xbb\xbf" + pub_pem}


@pytest.mark.parametrize("form", ["openssh", "pem-with-bom"])
def test_pubkey_that_is_not_pem_is_no_hmac_secret(tmp_path: Path, form: str) -> None:
    pytest.importorskip("cryptography")
    _private, public, _key_id = keygen(tmp_path / "signer")
    published = tmp_path / f"signer.{form}"
    published.write_bytes(_public_forms(public.read_bytes())[form])

    # The tamperer: a log of its own choosing, "signed" with the public key's bytes as HMAC secret.
    forged = tmp_path / "audit.jsonl"
    log = AuditLog(session_id="forged", sinks=[JsonlFileSink(forged)], key=HmacKey(published.read_bytes().strip()))
    log.emit(
        "execution_success",
        isolation_type="namespace",
        sandbox_mode="enforcing",
        security_level="strict",
        extra={"kind": "cell", "note": "accuracy 0.99, no violations"},
    )
    log.close()

    # Sanity: the real public key (PEM as keygen wrote it) refuses the forgery.
    honest = glsandbox_cli("audit", "verify", str(forged), "--pubkey", str(public))
    assert honest.returncode == 1, honest.stdout + honest.stderr

    result = glsandbox_cli("audit", "verify", str(forged), "--pubkey", str(published))
    assert result.returncode != 0, (
        f"--pubkey {form} file: a log signed by anyone holding the public key verifies:\n{result.stdout}{result.stderr}"
    )
