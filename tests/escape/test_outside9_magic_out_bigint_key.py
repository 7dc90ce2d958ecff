"""Outside review (10th): a tampered ``--out`` reply with a huge int key escapes the magic's refusal unrecorded.

Attack: a ``%%sandbox`` cell replaces the sandbox-side helper
``sandbox_side_get_names`` (the module docstring says a cell can) so that
the reply of the next ``--out x`` holds, besides ``x``, the key ``2**20000``.
``magics/transfer.accept_out`` names the extra keys with ``repr(k)[:80]``:
``repr`` of an int past 4300 digits raises ``ValueError`` (Python's int
string-conversion limit) before the refusal is built, so the host's own
code fails with a ValueError traceback; ``_copy_out`` catches only
``SandboxSecurityError``, so no ``protocol`` violation is recorded for the
tampered reply and the user is shown a host bug, not "the sandbox's reply
was tampered with".

Measured from the host: the magic raised ``ValueError: Exceeds the limit
(4300 digits) for integer string conversion`` from ``transfer.py:51``; ``x``
was not written (that part held). Severity: low (a sandbox hides its
tampering from the audit record and the user's error handling).

Judged from the host: the cell raises the magic's SandboxSecurityError.

Fix (suggested): ``accept_out``: describe a non-str key by its type (and a
bounded ``reprlib``), never ``repr`` of a hostile value; catch any exception
there as tampering.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(200)]

SCRIPT = r"""
from IPython.core.interactiveshell import InteractiveShell
from glsandbox_kernel.exceptions import SandboxSecurityError
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "glsandbox_kernel")
first = shell.run_cell(
    "%%sandbox strict --isolation namespace\n"
    "import glsandbox_kernel.magics.sandbox_side as side\n"
    "side.sandbox_side_get_names = lambda names: {2**20000: 1, **{n: 1 for n in names}}\n"
    "x = 1\n"
)
assert first.error_in_exec is None, first.error_in_exec
second = shell.run_cell("%%sandbox strict --isolation namespace --out x\npass\n")
err = second.error_in_exec
print("RESULT", type(err).__name__, isinstance(err, SandboxSecurityError), "x" in shell.user_ns)
"""


def test_a_huge_int_key_in_the_out_reply_is_refused_as_tampering() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180, check=False)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, (res.stdout[-1500:], res.stderr[-1500:])
    _, name, security, written = lines[-1].split()
    assert written == "False", "a tampered --out reply wrote x"
    assert security == "True", f"a tampered --out reply raised {name} on the host, not SandboxSecurityError"
