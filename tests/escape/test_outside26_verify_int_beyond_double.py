"""Outside review 26: a sandboxed cell makes an honest ``glsandbox run`` notebook fail its own verification.

Severity: medium (the evidence of an honest run is destroyed by the untrusted code it is meant to judge: the
analyst's signed notebook reads "FAILED ... output 1 edited after it ran" / "outputs changed after the notebook
was sealed", which is what a tamperer's notebook reads; a hostile cell can frame the analyst, and auditors who
meet such false verdicts learn to wave real ones through).

Attack: one cell displays an output whose metadata (or JSON data) holds an integer beyond a double's range:
``display({'text/plain': 'm'}, metadata={'big': 10**400}, raw=True)`` (or ``application/json``
``{'big': 10**400}``). Nothing is hidden or lost: the kernel relays it (``kernel/relay.py`` ``json_safe`` lets
ints up to ``MAX_INT_BITS`` through, and replaces only NaN/inf, with a notice), the record and the seal hash it
exactly (``notebook/evidence.py`` ``_json_safe`` fmt 2: ``"\\0int:<digits>"``), and the notebook stores it.

Where: ``notebook/checks.py`` ``unencodable_values``, the first step of ``verify_notebook``, replaces every int
of more than 1023 bits with ``"<not JSON: an int beyond a double>"`` before hashing, on the premise that such an
int "cannot be in content a record or a seal covers" -- but the kernel's records and ``glsandbox run``'s seal
do cover them. So the re-derived hashes differ and an unmodified notebook fails.

How judged: ``glsandbox run`` (signed) of a two-cell notebook, then ``glsandbox audit verify --pubkey`` of the
untouched output: exit 1, "output 1 edited after it ran (the record lists every output)" (measured). The same
record hashed in-process from ``json.load`` of the file (``evidence.saved_outputs_evidence``) matches the
record exactly, so nothing was edited.

Suggested fix: make the two sides agree. Either the kernel replaces ints beyond a double (as it does NaN/inf:
JupyterLab would save them as ``null`` anyway) before hashing and relaying, with a notice; or
``unencodable_values`` leaves them alone where the record/seal format (outputs format 2) hashes them exactly.
"""

from __future__ import annotations

import pytest

from ..conftest import glsandbox_cli
from .test_outside26_common import glsandbox_run, magic_untouched

pytestmark = pytest.mark.timeout(300)

CELLS = (
    "totals = {'diesel': 268.0}\ntotals",
    "display({'text/plain': 'factor table v2'}, metadata={'rows': 10**400}, raw=True)",
)


def test_an_unmodified_run_with_a_huge_int_output_verifies(tmp_path) -> None:
    key = tmp_path / "signing.key"
    assert glsandbox_cli("keygen", str(key)).returncode == 0
    out = glsandbox_run(tmp_path, CELLS, "--sign-key", str(key))
    verified = glsandbox_cli("audit", "verify", str(out), "--pubkey", f"{key}.pub")
    assert verified.returncode == 0, (
        "an untouched, signed `glsandbox run` notebook fails verification because a sandboxed cell displayed "
        f"an int beyond a double's range (10**400) in output metadata:\n{verified.stdout}{verified.stderr}"
    )


def test_magic_output_with_a_huge_int_verifies(tmp_path) -> None:
    """The same through the ``%%sandbox`` magic in a stock ``python3`` kernel (nbclient, nothing touched):
    "output 1 edited after it ran" and the warning "a value that is not JSON (RFC 8259) nor in any record"."""
    verified = magic_untouched(tmp_path, "display({'text/plain': 'm'}, metadata={'rows': 10**400}, raw=True)")
    assert verified.returncode == 0, (
        "an untouched magic notebook fails verify after a sandboxed output held 10**400 in its metadata:\n"
        f"{verified.stdout}{verified.stderr}"
    )
