"""Outside review (8th): a signed, sealed notebook's widget output shows what uncovered metadata says.

Attack (tamperer, after the run): a sandboxed cell shows an ipywidget,
``ipywidgets.Label('accuracy 0.51')``. Its saved output is a widget *view*,
``application/vnd.jupyter.widget-view+json`` ``{"model_id": ...}``, which the
record covers; what the view displays is the model's state, which frontends
read from ``notebook.metadata.widgets`` (``application/vnd.jupyter.widget-state+json``).
``glsandbox run`` saves no widget state, and the seal and records do not
cover that key (``evidence.VOLATILE_FIELDS``: "the widget views are
outputs, covered"). So the tamperer adds a state for the covered model id
saying ``accuracy 0.99`` (or any widget, e.g. an ``HTMLModel`` with markup
the sandbox's widget filter would have removed); JupyterLab with saved
widget state, ``jupyter nbconvert --to html`` and nbviewer render that value
in the place of the sealed output, and ``glsandbox audit verify --pubkey``
still prints ``OK ... signatures verified`` with no word about it.

Judged from the host: verify of the tampered notebook is not a silent OK --
it fails, or at least names the widget state that decides what a covered
output shows.

Fix (suggested): put ``metadata.widgets`` into the seal (the kernel knows
every widget state the sandbox sent: record its digest per cell, or the
final state at seal time), or have verify fail (``--strict``) / warn when
``metadata.widgets`` holds state for a model id a sealed output names;
and correct the README's "widget views are outputs and are covered".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need, signed_run

pytestmark = pytest.mark.timeout(400)

CELL = "import ipywidgets as w\nw.Label('accuracy 0.51')"


def _notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(CELL))
    nbformat.write(nb, str(path))


def test_widget_state_added_after_the_run_is_named_by_verify(tmp_path: Path) -> None:
    need("namespace")
    pytest.importorskip("ipywidgets")
    out, key = signed_run(tmp_path, _notebook)

    nb = json.loads(out.read_text())
    views = [
        o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for o in nb["cells"][0]["outputs"]
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert views, f"the cell shows no widget view: {nb['cells'][0]['outputs']}"
    honest = glsandbox_cli("audit", "verify", str(out), "--pubkey", f"{key}.pub")
    assert honest.returncode == 0, honest.stdout

    nb["metadata"]["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "version_major": 2,
            "version_minor": 0,
            "state": {
                views[0]: {
                    "model_name": "LabelModel",
                    "model_module": "@jupyter-widgets/controls",
                    "model_module_version": "2.0.0",
                    "state": {"value": "accuracy 0.99", "description": ""},
                }
            },
        }
    }
    out.write_text(json.dumps(nb))
    result = glsandbox_cli("audit", "verify", str(out), "--pubkey", f"{key}.pub")
    # the first line names the file (whose path may hold any word): only what follows counts
    named = any("widget" in line.lower() for line in result.stdout.splitlines()[1:])
    assert result.returncode != 0 or named, (
        "widget state added after the run decides what a sealed widget output shows, and verify says "
        f"nothing:\n{result.stdout}"
    )
