"""Outside review (15th): a ``%%sandbox`` cell raises the magic's own host verdicts (SandboxSecurityError ...).

Attack: the cell defines ``class SandboxSecurityError(Exception)`` and raises
it with the text the magic uses when it refuses a tampered ``--out`` reply.
``magics/display.sandbox_error`` turns the cell's ``ename`` into a host
exception class: a builtin's name or, here, a name of
``glsandbox_kernel.exceptions``, so the class it raises on the host is a
real subclass of ``glsandbox_kernel.exceptions.SandboxSecurityError`` --
the very class (cached by name) the magic raises for its own refusals.
Likewise ``SandboxTimeoutError``/``SandboxMemoryError``/``SandboxEscapeError``.

What the host saw: ``run_cell``'s ``error_in_exec`` is an instance of
``glsandbox_kernel.exceptions.SandboxSecurityError`` named
``SandboxSecurityError`` with the forged text; no violation is in the
sandbox's audit (the real refusal records one). Host code that branches on
the library's exception types (``except SandboxTimeoutError:`` retry with
more time; ``except SandboxSecurityError:`` discard the session, report an
attack) is steered by the cell, and the notebook shows a host verdict the
host never gave. Severity: low (spoofed host verdicts; no code runs).

Expected: an exception a cell raised never is an instance of the
library's own exception classes on the host (a plain ``SandboxCellError``,
or its builtin base only); the library's classes are raised for the
host's own verdicts.

Fix direction: ``magics/display.sandbox_error`` takes the base from
``glsandbox_kernel.exceptions`` only for a host verdict: the magic's own
``except`` paths, and an ``ExecutionResult`` whose error the host set
(``sandbox.py`` sets ``error_name`` both from the worker's reply, line
~326, and from the host's own failure, ~345: mark the latter, e.g.
``result.error_by_host``); a name the worker reported maps to builtins
only (or is shown as ``SandboxCellError`` with the name as text). Files:
``results.py``, ``sandbox.py``, ``magics/display.py``, ``magics/magic.py``.
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
from glsandbox_kernel import exceptions
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "glsandbox_kernel")
for name in ("SandboxSecurityError", "SandboxTimeoutError"):
    res = shell.run_cell(
        "%%sandbox strict --isolation namespace\n"
        f"class {name}(Exception):\n"
        "    pass\n"
        f"raise {name}('--out x: the sandbox reply was tampered with; nothing was copied to this kernel')\n"
    )
    err = res.error_in_exec
    print("RESULT", name, type(err).__name__, isinstance(err, getattr(exceptions, name)))
"""


def test_a_cell_cannot_raise_the_magics_own_exceptions_on_the_host() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180, check=False)
    lines = [ln.split() for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 2, (res.stdout[-1500:], res.stderr[-1500:])
    forged = [name for _, name, _shown, is_host_class in lines if is_host_class == "True"]
    assert not forged, (
        f"a cell's own exception became the host library's {forged} on the host: the notebook and host code "
        "cannot tell it from the magic's own verdict"
    )
