"""Outside review (3rd): a later cell's ``update_display`` rewrites an earlier cell's sealed output.

Attack (also plain use: progress bars, dashboards): cell 1 shows
``display('accuracy 0.51', display_id='acc')``; cell 2, sandboxed, sends
``update_display('accuracy 0.99', display_id='acc')``. The frontend
(nbclient in ``glsandbox run``, JupyterLab alike) replaces cell 1's output;
cell 1's record still hashes the old one and cell 2's record says nothing
about the update. Measured: ``glsandbox run`` writes a notebook whose cell 1
shows ``'accuracy 0.99'`` and whose own verification fails with "cell 1:
output 1 edited after it ran": an honest run reads as tampering, and any
later cell can make an earlier cell's evidence fail (or show what it never
produced).

Judged from the host: the notebook ``glsandbox run`` wrote verifies with its
key, or its verification names cell 2 as the cell that rewrote the output.

Fix (suggested): ``outputs.py``/``notebook/evidence.py``: record an update of
another cell's display in the updating cell's record (display id, new
hash), and let verify accept the earlier cell's output as the last update
named by the chain; or refuse (drop) sandbox updates of displays of other cells.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from ..conftest import glsandbox_cli as _glsandbox

pytestmark = pytest.mark.timeout(300)


def test_an_update_from_a_later_cell_does_not_read_as_tampering(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("display('accuracy 0.51', display_id='acc')"),
        nbformat.v4.new_code_cell(
            "from IPython.display import update_display\nupdate_display('accuracy 0.99', display_id='acc')"
        ),
    ]
    src, out, key = tmp_path / "n.ipynb", tmp_path / "n.out.ipynb", tmp_path / "hmac.key"
    nbformat.write(nb, str(src))
    key.write_bytes(b"outside-review-3-cross-cell-key-0123")
    _glsandbox("run", str(src), "-o", str(out), "--key", str(key))
    assert out.exists()
    verify = _glsandbox("audit", "verify", str(out), "--key", str(key))
    text = verify.stdout + verify.stderr
    assert verify.returncode == 0 or "cell 2" in text, f"an honest run fails its own verification: {text.strip()}"
