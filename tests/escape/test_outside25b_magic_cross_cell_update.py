"""Outside review 25b: a later ``%%sandbox`` cell's ``update_display`` rewrites an earlier cell's sealed output.

Severity: medium (audit integrity in every stock-kernel notebook that uses the magic: the saved
notebook shows what no record says, and the honest run fails verify, blaming the earlier cell).

README (Evidence): "Display ids are scoped to the cell that showed them, so a later cell's
``update_display`` of an earlier cell's display appears as a new output of the later cell and never
rewrites a sealed output; a ``%%sandbox`` cell's displays live in their own id space". Review 3's
fix (``kernel/displays.DisplayScopes``) is the glsandbox kernel's; the magic's
``magics/display.show_output`` only prefixes the sandbox's id (``glsandbox-sandbox:acc``), the same
prefix in every cell and session, and publishes the update as an update.

Attack: cell 2 (``%%sandbox``) shows ``display('accuracy 0.51', display_id='acc')``; cell 3
(``%%sandbox``, the same or any later session) sends ``update_display('accuracy 0.99',
display_id='acc')``.

What the host saw (stock ``python3`` kernel, nbclient as papermill runs it, nothing edited): cell 2's
saved output reads ``'accuracy 0.99'`` (its record hashes 0.51); cell 3's record lists no output
(``outputs_count 0``); ``glsandbox audit verify`` fails: "cell 3 (In [2]): output 1 edited after it ran".
A sandboxed cell so rewrites any earlier sandboxed cell's figure in the live notebook and the saved
file, and the evidence then points at the earlier cell.

Expected: an untouched run verifies; cell 2 keeps the output its record lists; the update shows as an
output of cell 3 (as in the kernel).

Fix direction: scope the magic's relayed ids per cell as the kernel does (``acc`` -> ``glsandbox-sandbox:
acc~<cell scope>``; an update of an id the running cell did not show becomes a new ``display_data`` of
that cell), e.g. with ``kernel.displays.DisplayScopes`` held by the magic.
"""

from __future__ import annotations

from pathlib import Path

from .test_outside15_common import code_cell, executed, verify

SHOW = "%%sandbox strict --isolation namespace\nfrom IPython.display import display\ndisplay('accuracy 0.51', display_id='acc')"
UPDATE = (
    "%%sandbox strict --isolation namespace\n"
    "from IPython.display import update_display\nupdate_display('accuracy 0.99', display_id='acc')"
)


def test_a_later_magic_cell_cannot_rewrite_an_earlier_cells_output(tmp_path: Path) -> None:
    nb = executed(tmp_path, "python3", "%load_ext glsandbox_kernel", SHOW, UPDATE)
    shown = [
        "".join(o["data"]["text/plain"])
        for o in code_cell(nb, 1)["outputs"]
        if o.get("output_type") == "display_data" and "text/plain" in o.get("data", {})
    ]
    assert shown[:1] == ["'accuracy 0.51'"], f"cell 2's output was rewritten by cell 3: it shows {shown}"
    check = verify(nb, tmp_path, name="honest.ipynb")
    assert check.returncode == 0, f"the untouched run fails verify:\n{check.stdout}{check.stderr[-2000:]}"
