"""Sandbox display ids are scoped to the cell that showed them (kernel/displays.py), over a real kernel.

nbclient and JupyterLab apply an ``update_display_data`` to every output with its id; so a later
cell's update would rewrite an earlier cell's sealed output. Judged at the protocol level: a cell's
own updates name its display's id, a later cell's update arrives as a new ``display_data`` of that
cell under an id no earlier output has. A widget callback (a comm request, no cell of its own) is
no cell either: its update of an id arrives as a new ``display_data`` under a fresh id too (outside
review 25, F4: it used to update the latest cell's display, a sealed output). And at the notebook
level: a frontend that applies updates as JupyterLab does (to every output with the id, whichever
request showed it) saves a notebook that, sealed by the server's pre-save hook, still verifies,
the earlier cell's output as its record hashed it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from glsandbox_kernel.notebook.presave import pre_save_hook
from glsandbox_kernel.notebook.verify import verify_notebook

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, kernel_made
from .test_interactive import _verify_cli

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest

pytestmark = pytest.mark.timeout(180)


def _displays(outputs: list[dict], kind: str) -> list[tuple[str, str]]:
    return [
        (m["content"]["transient"]["display_id"], m["content"]["data"].get("text/plain", ""))
        for m in outputs
        if m["msg_type"] == kind and not kernel_made(m) and m["content"].get("transient", {}).get("display_id")
    ]


class Notebook:
    """What JupyterLab keeps of a kernel's messages: a cell per execute_request (with its ``cellId``),
    and an ``update_display_data`` of any request applied to every cell output showing its id."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.nb = nbformat.v4.new_notebook()
        self.nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "glsandbox", "language": "python"}
        self.shown: dict[str, list[dict[str, Any]]] = {}  # display id -> the cell outputs showing it

    def run(self, source: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        content = {"code": source, "silent": False, "store_history": True, "user_expressions": {}}
        msg = self.kernel.kc.session.msg("execute_request", content, metadata={"cellId": cell.id})
        self.kernel.kc.shell_channel.send(msg)
        outputs = self.kernel.collect(str(msg["header"]["msg_id"]))
        for m in outputs:
            if m["msg_type"] == "execute_input":
                cell.execution_count = m["content"]["execution_count"]
            elif m["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                cell.outputs.append(nbformat.v4.output_from_msg(m))
                display_id = m["content"].get("transient", {}).get("display_id")
                if display_id:
                    self.shown.setdefault(display_id, []).append(cell.outputs[-1])
            self.apply(m)
        return self.kernel.shell_reply(str(msg["header"]["msg_id"]))["content"], outputs

    def apply(self, m: dict[str, Any]) -> None:
        if m["msg_type"] == "update_display_data":
            for out in self.shown.get(m["content"]["transient"]["display_id"], []):
                out["data"], out["metadata"] = m["content"]["data"], m["content"]["metadata"]

    def saved(self) -> Any:
        """The notebook as the server saves it: through its pre-save hook (records copied, sealed)."""
        model = {"type": "notebook", "content": json.loads(nbformat.writes(self.nb))}
        pre_save_hook(model=model, path="scopes.ipynb", contents_manager=None)
        return nbformat.from_dict(model["content"])


def test_updates_reach_only_the_cell_that_showed_the_display(glsandbox_kernelspec: str, tmp_path: Path) -> None:
    kernel = Kernel("glsandbox")
    try:
        _updates_stay_in_their_cell(kernel, tmp_path)
    finally:
        kernel.shutdown()


def _updates_stay_in_their_cell(kernel: Kernel, tmp_path: Path) -> None:
    ui = Notebook(kernel)
    reply, outputs = ui.run(
        "from IPython.display import display, update_display\n"
        "display('a1', display_id='acc')\nupdate_display('a2', display_id='acc')"
    )
    assert reply["status"] == "ok", reply
    [(first, _)] = _displays(outputs, "display_data")
    assert _displays(outputs, "update_display_data") == [(first, "'a2'")]  # the running cell's own update

    reply, outputs = ui.run("update_display('b1', display_id='acc')\nupdate_display('b2', display_id='acc')")
    assert reply["status"] == "ok", reply
    [(second, text)] = _displays(outputs, "display_data")  # a new output of this cell
    assert text == "'b1'" and second != first
    assert _displays(outputs, "update_display_data") == [(second, "'b2'")]

    reply, outputs = ui.run(
        "import ipywidgets as w\ns = w.IntSlider(value=1)\n"
        "def moved(c):\n"
        "    update_display(f'v{c[\"new\"]}', display_id='acc')\n"
        "    update_display(f'w{c[\"new\"]}', display_id='acc')\n"
        "s.observe(moved, names='value')\ns"
    )
    assert reply["status"] == "ok", reply
    before = ui.saved()
    assert verify_notebook(before).ok, verify_notebook(before).problems
    sealed = copy.deepcopy([cell.outputs for cell in before.cells])

    # The user moves the slider: a widget callback, between cells, updates 'acc'.
    view = next(m for m in outputs if m["msg_type"] == "execute_result")
    model_id = view["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    content = {"comm_id": model_id, "data": {"method": "update", "state": {"value": 7}, "buffer_paths": []}}
    msg = kernel.kc.session.msg("comm_msg", content)
    kernel.kc.shell_channel.send(msg)
    outputs = kernel.collect(str(msg["header"]["msg_id"]))
    for m in outputs:
        ui.apply(m)
    # not an update of the finished cells' displays: a new display under a fresh id, its own update follows it
    [(fresh, text)] = _displays(outputs, "display_data")
    assert text == "'v7'" and fresh not in ui.shown, (fresh, outputs)
    assert _displays(outputs, "update_display_data") == [(fresh, "'w7'")], outputs

    after = ui.saved()
    assert [cell.outputs for cell in after.cells] == sealed  # the second cell still shows 'b2'
    shown = next(o for o in after.cells[1].outputs if o["output_type"] == "display_data")
    assert "".join(shown.data["text/plain"]) == "'b2'"
    result = verify_notebook(after)
    assert result.ok, result.problems
    # and as the user checks it: the saved file, one clean top-to-bottom run
    path = tmp_path / "scopes.ipynb"
    nbformat.write(after, str(path))
    cli = _verify_cli(str(path), "--strict")
    assert cli.returncode == 0, cli.stdout + cli.stderr
