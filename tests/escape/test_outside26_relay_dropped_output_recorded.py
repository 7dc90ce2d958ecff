"""Outside review 26: an output the kernel fails to relay vanishes from the notebook, yet its record lists it.

Severity: medium. A sandboxed cell displays ``{'text/plain': 'p', 'text/html': '<i>\\udfff</i>'}`` (a lone
surrogate in HTML). The output never reaches the frontend (nothing on screen, no notice), and the untouched
notebook ``glsandbox run`` writes fails ``audit verify``: "output 1 removed after it ran (the record lists every
output)" -- the verdict a tamperer who deleted an output gets. So untrusted code can make any honest run's
evidence read as tampered (and make its own output silently disappear from the analyst's view).

Where: ``kernel/relay.py`` ``IOPubRelay.output``: ``clean_frame`` sanitizes ``text/html`` with
``active_content.clean_html`` -> ``nh3.clean``, which raises ``UnicodeEncodeError`` on a lone surrogate
(measured: ``clean_html('<i>\\udfff</i>')``). The ``except Exception`` there logs "dropped an output frame"
and returns ``None`` -- which the caller reads as "published unchanged", so the session records the original
frame as shown. Any other exception in that block (``content_for``, ``session.send``) desynchronises the same way.
Text outputs and metadata get ``safe_text`` (surrogates escaped, with a notice) first; HTML does not.

How judged: ``glsandbox run`` of a 3-cell notebook, then the saved notebook (host side): cell 2 holds no output
but its audit output, and ``glsandbox audit verify`` exits 1 naming the output as removed. Nothing touched it.

Suggested fix: escape lone surrogates (``safe_text``) before any sanitizer, in ``clean_bundle``/``clean_state``;
and when the relay drops a frame, tell the session (e.g. return a sentinel) so the record does not list an output
the frontend never got -- or publish a notice in its place that the record covers.
"""

from __future__ import annotations

import json

import pytest

from ..conftest import glsandbox_cli
from .test_outside26_common import glsandbox_run, magic_untouched

pytestmark = pytest.mark.timeout(300)

CELLS = (
    "total = 268.0\ntotal",
    "display({'text/plain': 'p', 'text/html': '<i>\\udfff</i>'}, raw=True)",
    "print('after')",
)


def test_html_with_a_lone_surrogate_is_shown_and_verifies(tmp_path) -> None:
    out = glsandbox_run(tmp_path, CELLS)
    saved = json.loads(out.read_text(encoding="utf-8"))
    shown = [
        o for o in saved["cells"][1]["outputs"] if (o.get("metadata") or {}).get("glsandbox", {}).get("role") != "audit"
    ]
    verified = glsandbox_cli("audit", "verify", str(out))
    assert shown and verified.returncode == 0, (
        "a sandboxed display with a lone surrogate in text/html never reached the notebook "
        f"(outputs shown besides the audit line: {shown!r}), and the untouched notebook fails verify:\n"
        f"{verified.stdout}{verified.stderr}"
    )


def test_magic_html_with_a_lone_surrogate_verifies(tmp_path) -> None:
    """The ``%%sandbox`` magic (stock ``python3`` kernel) drops the frame too, with a notice and a stream line
    ("dropped an output frame from the sandbox (UnicodeEncodeError)"); its record still fails verify
    ("output 1 edited after it ran"), measured with nbclient, nothing touched."""
    verified = magic_untouched(tmp_path, "display({'text/plain': 'p', 'text/html': '<i>\\udfff</i>'}, raw=True)")
    assert verified.returncode == 0, (
        "an untouched magic notebook fails verify after a sandboxed display with a lone surrogate in text/html:\n"
        f"{verified.stdout}{verified.stderr}"
    )
