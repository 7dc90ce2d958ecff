"""Signing keys for audit records, notebook seals and attestations: HMAC or Ed25519 (host side).

Who calls: :class:`~glsandbox_kernel.audit.log.AuditLog` (signs each
``record_hash``), the notebook seal and ``glsandbox attest`` (sign), the
verifiers (check), ``glsandbox keygen`` (writes a key pair). Keys live on
the host only: the sandbox's environment is scrubbed to an allowlist and key
files are created ``0600``.

Two schemes:

- **HMAC-SHA256** (symmetric): any non-PEM key file or ``$GLSANDBOX_AUDIT_KEY``.
  Whoever can verify can also forge. Signature: 64 hex digits.
- **Ed25519** (public key, through ``cryptography``): ``glsandbox keygen`` writes
  ``NAME`` (PKCS#8 PEM private key, ``0600``) and ``NAME.pub`` (PEM public key).
  An auditor holding only the public key verifies and cannot forge.
  Signature: ``ed25519:<key id>:<base64>``, the key id being the first 16 hex
  digits of the SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path
from typing import Protocol

ED25519_PREFIX = "ed25519:"
_PEM_PRIVATE = b"-----BEGIN PRIVATE KEY-----"
_PEM_PUBLIC = b"-----BEGIN PUBLIC KEY-----"
_BOM = b"\xef\xbb\xbf"
#: the first word of an OpenSSH public key line (RFC 4253 / 8709 / 5656 names)
_OPENSSH_TYPES = frozenset(
    {b"ssh-ed25519", b"ssh-rsa", b"ssh-dss", b"ecdsa-sha2-nistp256", b"ecdsa-sha2-nistp384", b"ecdsa-sha2-nistp521"}
)


class Signer(Protocol):
    """Signs a message (a hash in hex) for a record, a seal or an envelope."""

    scheme: str

    def sign(self, message: bytes) -> str:
        """The signature text stored next to what it signs."""
        ...

    def sign_raw(self, message: bytes) -> bytes:
        """The raw signature bytes (for DSSE envelopes)."""
        ...

    def verifier(self) -> Verifier:
        """What checks this signer's signatures."""
        ...


class Verifier(Protocol):
    """Checks signatures made by a :class:`Signer`."""

    scheme: str

    def verify(self, message: bytes, signature: object) -> bool:
        """True when ``signature`` (the stored text) signs ``message``."""
        ...

    def verify_raw(self, message: bytes, signature: bytes) -> bool:
        """True when the raw ``signature`` bytes sign ``message``."""
        ...


class HmacKey:
    """HMAC-SHA256 with a shared secret: both :class:`Signer` and :class:`Verifier`."""

    scheme = "hmac-sha256"

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("HMAC key is empty")
        self._key = bytes(key)

    @property
    def key_id(self) -> str:
        return "hmac"

    def sign_raw(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def sign(self, message: bytes) -> str:
        return self.sign_raw(message).hex()

    def verify(self, message: bytes, signature: object) -> bool:
        return isinstance(signature, str) and hmac.compare_digest(signature, self.sign(message))

    def verify_raw(self, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(signature, self.sign_raw(message))

    def verifier(self) -> HmacKey:
        return self


class Ed25519Verifier:
    """An Ed25519 public key (``cryptography``)."""

    scheme = "ed25519"

    def __init__(self, public_key: object) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if not isinstance(public_key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        self._key = public_key
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify_raw(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def verify(self, message: bytes, signature: object) -> bool:
        if not isinstance(signature, str) or not signature.startswith(ED25519_PREFIX):
            return False
        _scheme, key_id, encoded = [*signature.split(":", 2), "", ""][:3]
        if key_id != self.key_id:
            return False
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return False
        return self.verify_raw(message, raw)


class Ed25519Signer:
    """An Ed25519 private key (``cryptography``); never leaves the host process."""

    scheme = "ed25519"

    def __init__(self, private_key: object) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if not isinstance(private_key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        self._key = private_key
        self._verifier = Ed25519Verifier(private_key.public_key())
        self.key_id = self._verifier.key_id

    @classmethod
    def generate(cls) -> Ed25519Signer:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign_raw(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def sign(self, message: bytes) -> str:
        return f"{ED25519_PREFIX}{self.key_id}:{base64.b64encode(self.sign_raw(message)).decode('ascii')}"

    def verifier(self) -> Ed25519Verifier:
        return self._verifier


def _refuse_key_lookalike(material: bytes) -> None:
    """``ValueError`` for material that is a key format we do not take as a secret.

    A PEM block or an OpenSSH public key must never become an HMAC secret: a
    public key's bytes are known to everyone, so a log "signed" with them
    would verify. Called by ``signer_from_bytes`` before it falls back to HMAC.
    """
    if material.startswith((b"-----BEGIN", _BOM)) or material.split(b" ", 1)[0] in _OPENSSH_TYPES:
        raise ValueError(
            "this key is in a format glsandbox does not sign or verify with (it takes Ed25519 keys as the PEM "
            "blocks `glsandbox keygen` writes); a key file is never taken as an HMAC secret"
        )


def signer_from_bytes(material: bytes) -> HmacKey | Ed25519Signer:
    """A signer from key material: a PEM private key is Ed25519, anything else an HMAC secret.

    Material that looks like any other key (a PEM block, an OpenSSH key, a byte-order mark) is refused.
    """
    material = material.strip()
    if material.startswith(_PEM_PRIVATE):
        from cryptography.hazmat.primitives import serialization

        return Ed25519Signer(serialization.load_pem_private_key(material, password=None))
    if material.startswith(_PEM_PUBLIC):
        raise ValueError("this is a public key: it can verify, not sign (use the private key file)")
    _refuse_key_lookalike(material)
    return HmacKey(material)


def verifier_from_bytes(material: bytes) -> HmacKey | Ed25519Verifier:
    """A verifier from key material: PEM public or private key (Ed25519), else an HMAC secret."""
    material = material.strip()
    if material.startswith(_PEM_PUBLIC):
        from cryptography.hazmat.primitives import serialization

        return Ed25519Verifier(serialization.load_pem_public_key(material))
    return signer_from_bytes(material).verifier()


def public_verifier_from_bytes(material: bytes) -> Ed25519Verifier:
    """The Ed25519 verifier of a ``--pubkey`` file: PEM (a byte-order mark tolerated) or ``ssh-ed25519``.

    Called by ``audit.cli.load_verifier`` for ``--pubkey``. Anything else is a
    ``ValueError``: an auditor's public key never becomes an HMAC secret.
    """
    from cryptography.hazmat.primitives import serialization

    material = material.strip()
    material = material[len(_BOM) :].strip() if material.startswith(_BOM) else material
    if material.startswith(_PEM_PUBLIC):
        return Ed25519Verifier(serialization.load_pem_public_key(material))
    if material.startswith(b"ssh-ed25519 "):
        return Ed25519Verifier(serialization.load_ssh_public_key(material))
    raise ValueError(
        "--pubkey needs an Ed25519 public key: a PEM 'BEGIN PUBLIC KEY' block (as `glsandbox keygen` "
        "writes it) or an 'ssh-ed25519 ...' line"
    )


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """The contents of a key file (``FileNotFoundError`` if missing, ``ValueError`` if empty)."""
    data = Path(path).read_bytes().strip()
    if not data:
        raise ValueError(f"key file {os.fspath(path)} is empty")
    return data


def keygen(path: str | os.PathLike[str], *, force: bool = False) -> tuple[Path, Path, str]:
    """Write a new Ed25519 pair: ``path`` (private, ``0600``) and ``path.pub``; returns both and the key id.

    Called by ``glsandbox keygen``. Refuses to overwrite unless ``force``.
    """
    private = Path(path)
    public = private.with_name(private.name + ".pub")
    signer = Ed25519Signer.generate()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | (0 if force else os.O_EXCL)
    if force and private.exists():
        private.unlink()
    fd = os.open(private, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, signer.private_pem())
    finally:
        os.close(fd)
    public.write_bytes(signer.verifier().public_pem())
    os.chmod(public, 0o644)
    return private, public, signer.key_id


def signature_scheme(signature: object) -> str:
    """What made a stored signature, from its form: ``"ed25519:<key id>"``, ``"hmac-sha256"`` or ``"unknown"``."""
    if isinstance(signature, str) and signature.startswith(ED25519_PREFIX):
        return ED25519_PREFIX + signature.split(":", 2)[1][:16] if signature.count(":") >= 2 else "unknown"
    if isinstance(signature, str) and len(signature) == 64 and all(c in "0123456789abcdef" for c in signature):
        return HmacKey.scheme
    return "unknown"


def _signed_by(scheme: str) -> str:
    if scheme == HmacKey.scheme:
        return "HMAC-signed (hmac-sha256, a shared secret)"
    if scheme.startswith(ED25519_PREFIX):
        return f"Ed25519-signed (key id {scheme[len(ED25519_PREFIX) :]})"
    return "signed in no format glsandbox writes"


def _given(verifier: Verifier) -> str:
    if verifier.scheme == Ed25519Verifier.scheme:
        return f"the key given is an Ed25519 public key (key id {getattr(verifier, 'key_id', '?')})"
    return "the key given is an HMAC secret (--key FILE or $GLSANDBOX_AUDIT_KEY)"


def signature_mismatch(verifier: Verifier, signature: object) -> str:
    """Why ``signature`` does not verify with ``verifier``: a scheme or key mismatch named, else a bad signature.

    Called by the verifiers (records, seals) after ``verify`` failed; the text follows "it is" / "is".
    """
    scheme = signature_scheme(signature)
    if scheme == HmacKey.scheme and verifier.scheme != HmacKey.scheme:
        return f"{_signed_by(scheme)}, but {_given(verifier)}: verify with --key FILE holding the HMAC secret"
    if scheme.startswith(ED25519_PREFIX) and verifier.scheme != Ed25519Verifier.scheme:
        return f"{_signed_by(scheme)}, but {_given(verifier)}: verify with --pubkey NAME.pub"
    if scheme.startswith(ED25519_PREFIX) and scheme[len(ED25519_PREFIX) :] != getattr(verifier, "key_id", None):
        return f"{_signed_by(scheme)}, but {_given(verifier)}: another key pair"
    if scheme == "unknown":
        return f"{_signed_by(scheme)} (forged or damaged); {_given(verifier)}"
    return f"{_signed_by(scheme)} with a bad signature (wrong key, or forged)"


def unchecked_signature_note(what: str, signature: object) -> str:
    """The note for ``what`` signed while no key was given, naming the option that checks it."""
    scheme = signature_scheme(signature)
    option = "--pubkey NAME.pub" if scheme.startswith(ED25519_PREFIX) else "--key FILE or $GLSANDBOX_AUDIT_KEY"
    return f"{what} {_signed_by(scheme)} but no key was given ({option}): signatures not checked"


__all__ = [
    "Ed25519Signer",
    "Ed25519Verifier",
    "HmacKey",
    "Signer",
    "Verifier",
    "keygen",
    "public_verifier_from_bytes",
    "read_key_file",
    "signature_mismatch",
    "signature_scheme",
    "signer_from_bytes",
    "unchecked_signature_note",
    "verifier_from_bytes",
]
