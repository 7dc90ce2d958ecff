"""``glsandbox audit verify`` names a signer/verifier mismatch instead of "bad signature".

Real ``glsandbox run`` notebooks (glsandbox kernel through nbclient) signed three ways: HMAC
(``--key``), Ed25519 (``--sign-key``) and unsigned, each verified by the real CLI with no key,
an HMAC key (``--key`` and ``$GLSANDBOX_AUDIT_KEY``), the right and another Ed25519 public key
(``--pubkey``): every message that fails names what was signed and what was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from ..escape.test_outside26_common import glsandbox_run

pytestmark = pytest.mark.timeout(400)
HMAC = b"auditor-shared-secret-0123456789"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("keymismatch")
    (base / "hmac.key").write_bytes(HMAC)
    (base / "other.key").write_bytes(b"another-secret-abcdefghijklmnop")
    for name in ("signing.key", "other-ed.key"):
        made = glsandbox_cli("keygen", str(base / name))
        assert made.returncode == 0, made.stdout + made.stderr
    out: dict[str, Any] = {"dir": base}
    for signer, args in {
        "hmac": ("--key", str(base / "hmac.key")),
        "ed25519": ("--sign-key", str(base / "signing.key")),
        "unsigned": (),
    }.items():
        work = base / signer
        work.mkdir()
        out[signer] = glsandbox_run(work, ("print(6 * 7)",), *args)
    return out


def _verify(runs: dict[str, Any], signer: str, option: str) -> tuple[int, str]:
    base: Path = runs["dir"]
    args = {
        "none": (),
        "hmac": ("--key", str(base / "hmac.key")),
        "hmac-wrong": ("--key", str(base / "other.key")),
        "pubkey": ("--pubkey", str(base / "signing.key.pub")),
        "pubkey-other": ("--pubkey", str(base / "other-ed.key.pub")),
        "env": (),
    }[option]
    env = {"GLSANDBOX_AUDIT_KEY": HMAC.decode()} if option == "env" else None
    res = glsandbox_cli("audit", "verify", str(runs[signer]), *args, env=env)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, res.stdout


@pytest.mark.parametrize(
    ("signer", "option", "code", "expected"),
    [
        ("hmac", "none", 0, "records are HMAC-signed (hmac-sha256, a shared secret) but no key was given (--key"),
        ("hmac", "hmac", 0, "signatures verified"),
        ("hmac", "env", 0, "signatures verified"),
        ("hmac", "hmac-wrong", 1, "is HMAC-signed (hmac-sha256, a shared secret) with a bad signature (wrong key"),
        ("hmac", "pubkey", 1, "is HMAC-signed (hmac-sha256, a shared secret), but the key given is an Ed25519 public"),
        ("hmac", "pubkey", 1, "verify with --key FILE holding the HMAC secret"),
        ("ed25519", "none", 0, "records are Ed25519-signed (key id "),
        ("ed25519", "none", 0, "but no key was given (--pubkey NAME.pub)"),
        ("ed25519", "pubkey", 0, "signatures verified"),
        ("ed25519", "hmac", 1, "but the key given is an HMAC secret (--key FILE or $GLSANDBOX_AUDIT_KEY): verify with"),
        ("ed25519", "env", 1, "but the key given is an HMAC secret"),
        ("ed25519", "pubkey-other", 1, "but the key given is an Ed25519 public key (key id "),
        ("ed25519", "pubkey-other", 1, "another key pair"),
        ("unsigned", "none", 0, "no key given"),
        ("unsigned", "hmac", 1, "its audit record is not signed (a key was given)"),
        ("unsigned", "pubkey", 1, "the notebook seal is not signed (a key was given)"),
    ],
)
def test_each_signer_and_verifier_is_named(
    runs: dict[str, Any], signer: str, option: str, code: int, expected: str
) -> None:
    returncode, stdout = _verify(runs, signer, option)
    assert returncode == code, stdout
    assert expected in stdout, stdout
    if code:
        assert "bad signature (wrong key, or forged)" not in stdout or option == "hmac-wrong", stdout


def test_the_seal_names_the_mismatch_too(runs: dict[str, Any]) -> None:
    _code, stdout = _verify(runs, "hmac", "pubkey")
    assert "the notebook seal is HMAC-signed (hmac-sha256, a shared secret), but the key given is an Ed25519" in stdout
    _code, stdout = _verify(runs, "ed25519", "hmac")
    assert "the notebook seal is Ed25519-signed (key id " in stdout and "an HMAC secret" in stdout
