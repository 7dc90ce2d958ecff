"""``glsandbox attest NOTEBOOK -o out.intoto.jsonl``: an in-toto attestation of a run, in a DSSE envelope (host side).

Who calls: the ``glsandbox`` CLI (:func:`add_attest_parser` registers the
subcommand; ``glsandbox audit verify X.intoto.jsonl`` calls
:func:`verify_attestation_cli`) and tests.

The file holds one DSSE envelope per line (``payloadType``
``application/vnd.in-toto+json``), whose payload is an in-toto Statement v1:

- ``subject``: the notebook and every file the run wrote, each by SHA-256
  (written files are taken from the cell records: any ``extra`` list of
  ``{"path", "sha256"}`` entries under ``files`` / ``written_files``);
- ``predicateType`` :data:`PREDICATE_TYPE`; ``predicate``: the verification
  of the notebook, the controls in force (the sandbox configuration each
  session recorded), backend, limits, every violation, each session's chain
  head and record count, and the environment.

Signatures follow DSSE: the signer signs ``PAE(payloadType, payload)``; the
``keyid`` is the key's id (:mod:`glsandbox_kernel.audit.keys`). With an
Ed25519 key, any DSSE implementation verifies it (the tests use
securesystemslib's ``dsse.Envelope``). An HMAC key gives a DSSE envelope
only the holder of the secret can check.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from ..audit.keys import Signer, Verifier
from ..cli_options import add_notebook_command, beside_notebook
from ..host_files import replace_file
from ..terminal_text import printable
from .shape import as_list, as_map

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "urn:glsandbox:predicate:notebook-run:v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: ``DSSEv1 <len> <type> <len> <body>``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _records(nb: Mapping[str, Any]) -> list[dict[str, Any]]:
    from .metadata import collect_records

    class _Nb:
        cells = as_list(nb.get("cells"))

    return collect_records(_Nb())


def _written_files(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for record in records:
        extra = record.get("extra") if isinstance(record.get("extra"), Mapping) else {}
        assert isinstance(extra, Mapping)
        for key in ("files", "written_files"):
            for item in extra.get(key) or []:
                if (
                    isinstance(item, Mapping)
                    and isinstance(item.get("path"), str)
                    and isinstance(item.get("sha256"), str)
                ):
                    files[item["path"]] = {"name": item["path"], "digest": {"sha256": item["sha256"]}}
    return list(files.values())


def build_statement(nb_path: str, nb: Mapping[str, Any], verifier: Verifier | None) -> dict[str, Any]:
    """The in-toto Statement for the notebook at ``nb_path`` (``nb`` its JSON)."""
    from .._version import __version__
    from .metadata import environment, session_heads
    from .verify import verify_notebook

    result = verify_notebook(nb, verifier)
    strict = verify_notebook(nb, verifier, strict=True)  # both verdicts: a gate may need either
    records = _records(nb)
    sessions: dict[str, dict[str, Any]] = {}
    violations: list[dict[str, Any]] = []
    for record in records:
        extra = record.get("extra") if isinstance(record.get("extra"), Mapping) else {}
        assert isinstance(extra, Mapping)
        if record.get("event_type") == "session_start":
            config = extra.get("config") if isinstance(extra.get("config"), Mapping) else {}
            assert isinstance(config, Mapping)
            sessions[str(record.get("session_id"))] = {
                "backend": extra.get("backend"),
                "isolation": record.get("isolation_type"),
                "level": record.get("security_level"),
                "mode": record.get("sandbox_mode"),
                "controls": dict(config),
                "limits": config.get("limits"),
            }
        for violation in record.get("violations") or []:
            if isinstance(violation, Mapping):
                violations.append({"seq": record.get("seq"), "session_id": record.get("session_id"), **violation})
    meta = as_map(nb.get("metadata"))
    nb_meta = meta.get("glsandbox") if isinstance(meta.get("glsandbox"), Mapping) else {}
    assert isinstance(nb_meta, Mapping)
    subject = [{"name": os.path.basename(nb_path), "digest": {"sha256": _sha256_file(nb_path)}}]
    subject += _written_files(records)
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "verification": {
                "ok": result.ok,
                "summary": result.summary(),
                "problems": result.problems,
                "warnings": result.warnings,
                "signatures_checked": result.key_checked,
                "strict": strict.ok,
                "strict_problems": [p for p in strict.problems if p not in result.problems],
            },
            "sessions": sessions,
            "backend": sorted({str(s.get("backend")) for s in sessions.values()}),
            "violations": violations,
            "chain": session_heads(records),
            "seal": nb_meta.get("seal"),
            # the run's, as the notebook holds it (None: not recorded); never the attesting machine's
            "environment": (nb_meta.get("environment") or None) if result.sealed else None,
            "attester_environment": environment(),
            "attested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "glsandbox": __version__,
        },
    }


def envelope(statement: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """A DSSE envelope of ``statement`` signed by ``signer``."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")
    signature = signer.sign_raw(pae(PAYLOAD_TYPE, payload))
    keyid = str(getattr(signer, "key_id", signer.scheme))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode("ascii")}],
    }


def _signers(signatures: list[Any], verifier: Verifier) -> str:
    """What signed the envelope, when not the key given: HMAC (key id ``hmac``) or another Ed25519 key."""
    ids = sorted({str(s.get("keyid")) for s in signatures if isinstance(s, Mapping)})
    if not ids:
        return "the envelope is unsigned"
    given = "an HMAC key" if verifier.scheme == "hmac-sha256" else "an Ed25519 public key"
    if "hmac" in ids and verifier.scheme != "hmac-sha256":
        return f"it is HMAC-signed, but {given} was given: verify with --key FILE holding the HMAC secret"
    if "hmac" not in ids and verifier.scheme == "hmac-sha256":
        return f"it is Ed25519-signed (key id {', '.join(ids)}), but {given} was given: verify with --pubkey NAME.pub"
    return f"signed by key id {', '.join(ids)}: wrong key, or the statement was altered"


def verify_envelope(env: Mapping[str, Any], verifier: Verifier | None) -> tuple[dict[str, Any] | None, list[str]]:
    """``(statement, problems)`` for one envelope; ``verifier`` None checks the structure only."""
    problems: list[str] = []
    try:
        payload = base64.b64decode(str(env["payload"]), validate=True)
        payload_type = str(env["payloadType"])
        signatures = list(env.get("signatures") or [])
    except (KeyError, ValueError, TypeError) as exc:
        return None, [f"not a DSSE envelope ({exc})"]
    if payload_type != PAYLOAD_TYPE:
        problems.append(f"payloadType is {payload_type!r}, not {PAYLOAD_TYPE}")
    if verifier is not None:
        keyid = str(getattr(verifier, "key_id", verifier.scheme))
        message = pae(payload_type, payload)
        good = False
        for sig in signatures:
            if isinstance(sig, Mapping) and sig.get("keyid") == keyid:
                try:
                    raw = base64.b64decode(str(sig.get("sig")), validate=True)
                except ValueError:
                    continue
                good = good or verifier.verify_raw(message, raw)
        if not good:
            problems.append(f"no valid signature by key {keyid} ({_signers(signatures, verifier)})")
    try:
        statement = json.loads(payload)
    except ValueError:
        return None, [*problems, "the payload is not JSON"]
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        problems.append("the payload is not an in-toto Statement v1")
    elif statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"predicateType is {statement.get('predicateType')!r}")
    return statement if isinstance(statement, dict) else None, problems


def check_subjects(statement: Mapping[str, Any], base_dir: str) -> tuple[list[str], list[str]]:
    """Subjects present next to the attestation (or in the current directory) must match their digest."""
    problems: list[str] = []
    notes: list[str] = []
    for subject in statement.get("subject") or []:
        if not isinstance(subject, Mapping):
            continue
        name = str(subject.get("name"))
        want = (subject.get("digest") or {}).get("sha256")
        candidates = [name] if os.path.isabs(name) else [os.path.join(base_dir, name), name]
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            notes.append(f"subject {name}: not found here, digest not compared")
        elif _sha256_file(path) != want:
            problems.append(f"subject {name}: its SHA-256 differs from the attested one (changed since)")
    return problems, notes


def verdict_problems(statement: Mapping[str, Any], strict: bool) -> list[str]:
    """The attested verdict as problems: a statement saying the notebook FAILED never verifies OK."""
    predicate = statement.get("predicate")
    verification = predicate.get("verification") if isinstance(predicate, Mapping) else None
    if not isinstance(verification, Mapping):
        return ["the statement records no verification verdict"]
    found: list[str] = []
    if verification.get("ok") is not True:
        found.append(f"the attested notebook FAILED verification when attested ({verification.get('summary')})")
        found += [f"  attested problem: {p}" for p in list(verification.get("problems") or [])[:20]]
    if strict and verification.get("strict") is not True:
        what = "records no strict verdict" if "strict" not in verification else "FAILED verify --strict when attested"
        found.append(f"--strict: the attested notebook {what}")
        found += [f"  attested problem: {p}" for p in list(verification.get("strict_problems") or [])[:20]]
    return found


# -- CLI ---------------------------------------------------------------------------------------------


def add_attest_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``glsandbox attest`` (called by :func:`glsandbox_kernel.cli.build_parser`)."""
    p = add_notebook_command(
        subparsers,
        "attest",
        attest_cli,
        help="write a DSSE-signed in-toto attestation of an executed notebook",
        description="Verify NOTEBOOK and write an in-toto Statement v1 about it (subject: the notebook and the "
        "files the run wrote; predicate: controls, backend, limits, violations, chain heads, environment) "
        "in a DSSE envelope signed with --sign-key (Ed25519) or --key (HMAC).",
        output_help="default: NOTEBOOK with .intoto.jsonl",
    )
    p.add_argument("--sign-key", metavar="PRIVATE", help="Ed25519 private key (glsandbox keygen)")
    p.add_argument("--key", metavar="FILE", help="HMAC key file (default: $GLSANDBOX_AUDIT_KEY)")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when the strict verdict fails too (both are always recorded)"
    )
    return p


def attest_cli(args: argparse.Namespace) -> int:
    """``glsandbox attest``: 0 written (notebook verified), 1 written but the notebook failed, 2 errors."""
    from ..audit.keys import read_key_file, signer_from_bytes
    from ..audit.log import load_key
    from .verify import read_notebook

    path = args.notebook
    try:
        material = read_key_file(args.sign_key) if args.sign_key else (load_key(args.key) if args.key else load_key())
        if material is None:
            print(
                "glsandbox attest: error: a signing key is needed (--sign-key PRIVATE or --key FILE)", file=sys.stderr
            )
            return 2
        signer = signer_from_bytes(material)
    except (OSError, ValueError) as exc:
        print(f"glsandbox attest: error: cannot use the key: {exc}", file=sys.stderr)
        return 2
    try:
        nb = read_notebook(path)
    except (OSError, ValueError) as exc:
        print(printable(f"glsandbox attest: error: cannot read {path}: {exc}", one_line=True), file=sys.stderr)
        return 2
    statement = build_statement(path, nb, signer.verifier())
    out = args.output or beside_notebook(path, ".intoto.jsonl")
    replace_file(out, json.dumps(envelope(statement, signer), sort_keys=True) + "\n")
    verification = statement["predicate"]["verification"]
    failed = not verification["ok"] or (args.strict and not verification["strict"])
    marked = " marked FAILED (audit verify of it fails)" if failed else ""
    print(f"glsandbox attest: wrote {out}{marked} ({len(statement['subject'])} subject(s), key {signer.scheme})")
    print(f"audit: {printable(verification['summary'], one_line=True)}")
    for problem in verification["problems"][:20]:  # they quote the notebook's own text: escaped
        print(f"  {printable(problem, one_line=True)}")
    print("audit --strict: " + ("OK" if verification["strict"] else "FAILED"))
    for problem in verification["strict_problems"][:20]:
        print(f"  {printable(problem, one_line=True)}")
    return 1 if failed else 0


def verify_attestation_cli(args: argparse.Namespace) -> int:
    """``glsandbox audit verify X.intoto.jsonl``: signatures, statement, subjects; 0 ok, 1 problems, 2 usage."""
    from ..audit.cli import load_verifier

    path: str = args.file
    try:
        verifier = load_verifier(args)
        with open(path, encoding="utf-8") as fh:
            lines = [line for line in fh.read().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        print(printable(f"glsandbox audit: error: {exc}", one_line=True), file=sys.stderr)
        return 2
    problems: list[str] = []
    notes: list[str] = []
    for number, line in enumerate(lines, start=1):
        try:
            env = json.loads(line)
        except ValueError:
            problems.append(f"line {number}: not JSON")
            continue
        statement, found = verify_envelope(env if isinstance(env, dict) else {}, verifier)
        problems += [f"line {number}: {p}" for p in found]
        if statement is not None:
            more, info = check_subjects(statement, os.path.dirname(os.path.abspath(path)))
            problems += [f"line {number}: {p}" for p in more]
            notes += info
            problems += [f"line {number}: {p}" for p in verdict_problems(statement, bool(getattr(args, "strict", 0)))]
    if not lines:
        problems.append("no envelope in the file")
    if verifier is None:
        problems.append("no key given (--pubkey PUBLIC or --key FILE): the attestation's signature was not checked")
    state = "OK" if not problems else "FAILED"
    shown = printable(path, one_line=True)
    print(f"{state}: {shown}: {len(lines)} attestation(s)" + (", signature verified" if not problems else ""))
    for problem in problems:  # they quote the attestation's own text (subjects, verdicts): escaped
        print(f"  {printable(problem, one_line=True)}")
    for note in notes:
        print(f"note: {printable(note, one_line=True)}")
    return 0 if not problems else 1


__all__ = [
    "add_attest_parser",
    "attest_cli",
    "build_statement",
    "envelope",
    "pae",
    "verdict_problems",
    "verify_envelope",
]
