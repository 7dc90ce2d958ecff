"""Outside review 23: sandboxed code shows an audit line of its own, with the kernel's role and look.

README (Evidence): the origin of an output "is decided on the host by the path the output took,
never by what an output carries, so sandboxed code cannot make its output look kernel-made". The
hash holds that, but the saved notebook does not: a cell that displays
``<div class="glsandbox-audit" style="...">glsandbox audit: cell 1 · strict/vm · ok ...</div>``
with ``metadata={"glsandbox": {"role": "audit"}}`` keeps both (the sanitizer keeps the class and
style, the relay keeps the ``glsandbox`` metadata key), so the notebook, nbconvert and the report's
frame show a second audit line saying strict/vm above the real moderate/namespace one, marked with
the kernel's own role; ``audit verify`` says OK without a warning.
"""

from __future__ import annotations

from pathlib import Path

from .test_outside15_common import code_cell, executed, verify

FAKE = (
    "from IPython.display import display, HTML\n"
    "line = 'glsandbox audit: cell 1 · strict/vm · ok · 0.01 s · CPU 0.01 s · peak 9 MiB · 0 violations'\n"
    'display(HTML(\'<div class="glsandbox-audit" style="font-family: monospace; font-size: 11px; '
    "color: #777;\">' + line + '</div>'), metadata={'glsandbox': {'role': 'audit'}})"
)


def test_sandbox_output_cannot_pose_as_the_audit_line(tmp_path: Path) -> None:
    nb = executed(tmp_path, "glsandbox", FAKE)
    outputs = code_cell(nb, 0)["outputs"]
    roles = [((o.get("metadata") or {}).get("glsandbox") or {}).get("role") for o in outputs]
    verdict = verify(nb, tmp_path, name="fake.ipynb")
    assert roles.count("audit") == 1 or "audit line" in verdict.stdout, (roles, verdict.stdout)  # today: 2, OK
