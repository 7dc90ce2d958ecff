"""Auditor session (2026-12-04): containers of the wrong JSON type crash ``audit verify`` or pass it.

A real ``glsandbox run`` (glsandbox kernel through nbclient, Ed25519-signed) of three cells (a print,
a result, a figure-like display), then one field of a copy set to a value of another JSON type:

- crashed with a traceback (exit 1, no verdict, no other problem named): a code cell's ``outputs``
  a number, a cell's ``metadata`` a number or string, an audit output's ``preceding`` a number, the
  notebook's ``metadata.glsandbox.sessions`` a number;
- passed as OK (covered content or evidence edited, nothing named): a stream output's ``name`` set
  to anything but ``stderr`` (hashed as stdout), an output's ``metadata`` set to a non-object
  (hashed as ``{}``), a cell's ``metadata.glsandbox`` copy, its ``record`` or its ``seal`` set to a
  non-object (the copy skipped), the seal's ``scheme`` set to another scheme than its signature's.

Judged from the host: ``glsandbox audit verify --pubkey`` on the edited file exits 1 with a FAILED
verdict naming the field, never a traceback; the untouched file verifies ``--strict``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from ..jupyter.test_verify_encoding import _verify as verify_bytes
from .test_outside26_common import signed_run

pytestmark = pytest.mark.timeout(400)
AUDIT = "application/vnd.glsandbox.audit+json"
CELLS = (
    "print('total 42')",
    "21 * 2",
    "display({'text/plain': 'fig', 'image/png': 'iVBORw0KGgo='}, metadata={'image/png': {'width': 4}}, raw=True)",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = signed_run(tmp_path_factory.mktemp("shapes"), CELLS)
    return {**run, "nb": json.loads(run["out"].read_text(encoding="utf-8"))}


def _verify(run: dict[str, Any], name: str, nb: Any, *args: str) -> tuple[int, str]:
    return verify_bytes(run, name, json.dumps(nb).encode(), *args)


def _code(nb: Any, n: int) -> Any:
    return [c for c in nb["cells"] if c["cell_type"] == "code"][n]


def _audit(cell: Any) -> Any:
    return next(o for o in cell["outputs"] if AUDIT in o.get("data", {}))["data"][AUDIT]


def test_the_untouched_run_verifies_strict(run: dict[str, Any]) -> None:
    rc, said = _verify(run, "untouched", run["nb"], "--strict")
    assert rc == 0, said


EDITS = {
    "outputs-a-number": (lambda nb: _code(nb, 1).__setitem__("outputs", 1), "outputs are a int"),
    "cell-metadata-a-number": (lambda nb: _code(nb, 1).__setitem__("metadata", 1), "metadata is a int"),
    "cell-metadata-a-string": (lambda nb: _code(nb, 1).__setitem__("metadata", "s"), "metadata is a str"),
    "preceding-a-number": (lambda nb: _audit(_code(nb, 0)).__setitem__("preceding", 1), "preceding is a int"),
    "sessions-a-number": (lambda nb: nb["metadata"]["glsandbox"].__setitem__("sessions", 1), "sessions is a int"),
    "stream-name-unknown": (lambda nb: _code(nb, 0)["outputs"][0].__setitem__("name", "s"), "stream name 's'"),
    "stream-name-null": (lambda nb: _code(nb, 0)["outputs"][0].__setitem__("name", None), "stream name None"),
    "output-metadata-a-string": (
        lambda nb: _code(nb, 2)["outputs"][0].__setitem__("metadata", "s"),
        "outputs[0].metadata is a str",
    ),
    "output-metadata-null": (
        lambda nb: _code(nb, 1)["outputs"][0].__setitem__("metadata", None),
        "outputs[0].metadata is a NoneType",
    ),
    "glsandbox-copy-a-string": (
        lambda nb: _code(nb, 1)["metadata"].__setitem__("glsandbox", "s"),
        "metadata.glsandbox is a str",
    ),
    "glsandbox-copy-record-a-list": (
        lambda nb: _code(nb, 1)["metadata"]["glsandbox"].__setitem__("record", []),
        "metadata.glsandbox.record is a list",
    ),
    "glsandbox-copy-seal-a-number": (
        lambda nb: _code(nb, 1)["metadata"]["glsandbox"].__setitem__("seal", 1),
        "metadata.glsandbox.seal is a int",
    ),
    "seal-scheme-edited": (
        lambda nb: nb["metadata"]["glsandbox"]["seal"].__setitem__("scheme", "hmac-sha256"),
        "scheme",
    ),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_field_of_the_wrong_type_is_named_not_a_crash(run: dict[str, Any], edit: str) -> None:
    change, named = EDITS[edit]
    nb = json.loads(json.dumps(run["nb"]))
    change(nb)
    for args in ((), ("--strict",)):
        rc, said = _verify(run, edit, nb, *args)
        assert rc == 1 and "FAILED" in said, f"{edit} {args}: not failed:\n{said[-1500:]}"
        assert named in said, f"{edit}: {named!r} not named:\n{said[-1500:]}"


# report read the file with nbformat: another verdict than audit verify's (duplicate keys), or none
# (rc 2 "not a notebook"; a lone surrogate nbformat keeps crashed nh3); attest crashed on a cell or metadata
# that is no object
REPORTED = {
    "duplicate-key": lambda nb: json.dumps(nb).replace('"text/plain": ', '"text/plain": "forged", "text/plain": ', 1),
    "outputs-a-number": lambda nb: json.dumps({**nb, "cells": [{**c, "outputs": 1} for c in nb["cells"]]}),
    "cell-a-number": lambda nb: json.dumps({**nb, "cells": [*nb["cells"][:1], 1, *nb["cells"][2:]]}),
    "notebook-metadata-a-number": lambda nb: json.dumps({**nb, "metadata": 1}),
    "lone-surrogate-spliced": lambda nb: json.dumps(nb).replace("total 42", "total \\ud800 42", 1),
}


@pytest.mark.parametrize("edit", sorted(REPORTED))
def test_report_and_attest_give_the_verdict_of_audit_verify(run: dict[str, Any], edit: str) -> None:
    path = run["dir"] / f"reported-{edit}.ipynb"
    path.write_text(REPORTED[edit](run["nb"]), encoding="utf-8")
    key = str(run["dir"] / "signing.key")
    for command in (
        ("report", str(path), "-o", str(run["dir"] / f"{edit}.html"), "--pubkey", run["pub"]),
        ("attest", str(path), "--sign-key", key, "-o", str(run["dir"] / f"{edit}.intoto.jsonl")),
    ):
        res = glsandbox_cli(*command)
        said = res.stdout + res.stderr
        assert "Traceback" not in said, f"{command[0]} crashed:\n{said[-1500:]}"
        assert res.returncode == 1 and "audit: FAILED" in said, f"{command[0]} {edit}:\n{said[-1500:]}"
