"""Outside review (3rd): text hidden behind ``\\b``/``\\r`` in a sealed notebook verifies and shows in the report.

Attack: the tamperer edits a signed, sealed ``glsandbox run`` notebook's
stream output ``accuracy 0.51`` into ``accuracy 0.99\\raccuracy 0.51`` or
appends ``accuracy 0.99`` followed by as many backspaces. The evidence hash
covers the text after carriage returns and backspaces are applied
(``evidence.process_stream_text``, JupyterLab's rule), so the seal and the
record still match and ``glsandbox audit verify --key`` says OK. Every other
reader of the file shows the raw text: ``glsandbox report`` (nbconvert, in
the evidence HTML next to the "OK" verdict), nbviewer, GitHub, ``jq``. JupyterLab
itself never saves such text (it stores the processed form).

Judged from the host: the tampered notebook fails verification, or the
report generated from it does not contain the planted text.

Fix (suggested): ``notebook/evidence.py`` (canonical stream text) / ``notebook/verify.py``:
hash the raw saved text, or name a stored stream whose text changes under
``process_stream_text`` as a problem (Lab never writes one).
"""

from __future__ import annotations

import copy
import html
from collections.abc import Callable
from typing import Any

import nbformat
import pytest

from ..conftest import glsandbox_cli as _glsandbox

pytestmark = pytest.mark.timeout(300)

KEY = b"outside-review-3-hmac-key-0123456789"
FAKE = "accuracy 0.99"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("outside2-stream")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell("print('accuracy 0.51')"))
    src = base / "n.ipynb"
    nbformat.write(nb, str(src))
    key = base / "hmac.key"
    key.write_bytes(KEY)
    out = base / "n.out.ipynb"
    res = _glsandbox("run", str(src), "-o", str(out), "--key", str(key))
    assert res.returncode == 0, res.stdout + res.stderr
    return {"nb": nbformat.read(str(out), as_version=4), "key": str(key), "dir": base}


EDITS: dict[str, Callable[[str], str]] = {
    "carriage-return": lambda text: text.replace("accuracy 0.51", FAKE + "\raccuracy 0.51"),
    "backspaces": lambda text: text.rstrip("\n") + "\n" + FAKE + "\b" * len(FAKE),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_planted_stream_text_is_named_by_verify_or_absent_from_the_report(sealed: dict[str, Any], name: str) -> None:
    nb = copy.deepcopy(sealed["nb"])
    streams = [o for o in nb.cells[0].outputs if o.output_type == "stream"]
    assert streams and "accuracy 0.51" in streams[0].text, nb.cells[0].outputs
    streams[0].text = EDITS[name](streams[0].text)
    path = sealed["dir"] / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    verify = _glsandbox("audit", "verify", str(path), "--key", sealed["key"])
    if verify.returncode != 0:
        return  # named: the fix
    report = sealed["dir"] / f"{name}.html"
    made = _glsandbox("report", str(path), "--key", sealed["key"], "-o", str(report))
    shown = html.unescape(html.unescape(report.read_text()))  # the frame's srcdoc is escaped twice
    assert FAKE not in shown, (
        f"{name}: verify says OK ({verify.stdout.strip()[:120]}) and the evidence report shows the planted "
        f"{FAKE!r} (report rc {made.returncode})"
    )
