"""Interactive evidence: a cell re-run through a real glsandbox kernel, as JupyterLab runs it.

A small frontend drives the kernel over ZMQ with jupyter_client: each
execute_request carries ``metadata.cellId`` as JupyterLab's does, and each
cell keeps the outputs of its latest run (``nbformat.v4.output_from_msg``,
display updates applied), which is what JupyterLab saves. Verification then
reports the re-run as superseded records and the out-of-order run as a
warning with the actual order; ``--strict`` refuses it; a fresh top-to-bottom
run (Restart & Run All) verifies clean under ``--strict``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

from glsandbox_kernel.notebook.evidence import AUDIT_MIME
from glsandbox_kernel.notebook.verify import verify_notebook

from ..conftest import ROOT
from ..jupyter_fixtures import glsandbox_kernelspec

__all__ = ["glsandbox_kernelspec"]

pytestmark = pytest.mark.timeout(300)

SOURCES = ["n = 1\nprint('n is', n)", "n += 10\nprint('now', n)", "print('third sees', n)"]


class Frontend:
    """Runs notebook cells on a kernel and keeps what a frontend would save."""

    def __init__(self, kernel_name: str) -> None:
        self.km, self.kc = start_new_kernel(kernel_name=kernel_name, startup_timeout=120)
        self.nb = nbformat.v4.new_notebook()
        self.nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name, "language": "python"}

    def add(self, source: str) -> int:
        self.nb.cells.append(nbformat.v4.new_code_cell(source))
        return len(self.nb.cells) - 1

    def run(self, index: int) -> None:
        cell = self.nb.cells[index]
        content = {"code": cell.source, "silent": False, "store_history": True, "user_expressions": {}}
        msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell.id})
        self.kc.shell_channel.send(msg)
        cell.outputs = []
        displays: dict[str, list[int]] = {}
        while True:
            reply = self.kc.get_iopub_msg(timeout=120)
            if reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            kind = reply["msg_type"]
            if kind == "status" and reply["content"]["execution_state"] == "idle":
                break
            if kind == "execute_input":
                cell.execution_count = reply["content"]["execution_count"]
            elif kind == "clear_output":
                cell.outputs = []
            elif kind == "update_display_data":
                for at in displays.get(reply["content"].get("transient", {}).get("display_id"), []):
                    cell.outputs[at]["data"] = reply["content"]["data"]
                    cell.outputs[at]["metadata"] = reply["content"]["metadata"]
            elif kind in ("stream", "display_data", "execute_result", "error"):
                display_id = reply["content"].get("transient", {}).get("display_id")
                if display_id:
                    displays.setdefault(display_id, []).append(len(cell.outputs))
                cell.outputs.append(nbformat.v4.output_from_msg(reply))
        self.kc.get_shell_msg(timeout=60)

    def restart(self) -> None:
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=120)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def _saved(nb: Any, tmp_path: Any, name: str) -> Any:
    """The notebook written and read back, as a frontend's save would leave it."""
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return nbformat.read(str(path), as_version=4), str(path)


def _verify_cli(path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glsandbox_kernel.cli", "audit", "verify", path, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "GLSANDBOX_AUDIT_KEY"},
    )


def test_rerun_cell_is_reported_as_superseded_and_out_of_order(glsandbox_kernelspec: str, tmp_path: Any) -> None:
    ui = Frontend("glsandbox")
    try:
        cells = [ui.add(s) for s in SOURCES]
        for index in cells:
            ui.run(index)
        ui.run(cells[1])  # the analyst re-runs the middle cell
        nb, path = _saved(ui.nb, tmp_path, "interactive.ipynb")

        payload = nb.cells[1].outputs[-1].data[AUDIT_MIME]
        assert [r["seq"] for r in payload["superseded"]] == [2]  # its first run's record, kept
        result = verify_notebook(nb)
        assert result.ok, result.problems
        joined = "\n".join(result.warnings)
        assert "cell 2 (In [4]): re-executed" in joined and "superseded by seq 4" in joined
        assert "actual order of execution: cell 1 (In [1]), cell 3 (In [3]), cell 2 (In [4])" in result.warnings

        plain = _verify_cli(path)
        assert plain.returncode == 0 and "warning: cell 2 (In [4]): re-executed" in plain.stdout, plain.stdout
        strict = _verify_cli(path, "--strict")
        assert strict.returncode == 1 and "not one clean top-to-bottom run" in strict.stdout, strict.stdout

        # an edited output of the re-run cell is still caught
        nb.cells[1].outputs[0]["text"] = "now 99\n"
        assert any("output 1 edited" in p for p in verify_notebook(nb).problems)

        # Restart & Run All: one session, top to bottom, clean under --strict
        ui.restart()
        for index in cells:
            ui.run(index)
        clean, path = _saved(ui.nb, tmp_path, "rerun-all.ipynb")
        result = verify_notebook(clean, strict=True)
        assert result.ok, result.problems
        assert not result.warnings
        assert _verify_cli(path, "--strict").returncode == 0
    finally:
        ui.close()


def test_a_rerun_without_cell_ids_leaves_a_visible_gap(glsandbox_kernelspec: str, tmp_path: Any) -> None:
    """A frontend that does not name cells: the earlier record is simply gone, and verify says so."""
    ui = Frontend("glsandbox")
    try:
        cells = [ui.add(s) for s in SOURCES[:2]]
        for index in cells:
            ui.run(index)
        ui.nb.cells[0].id = uuid.uuid4().hex[:8]  # a new id: the kernel cannot tell it is the same cell
        ui.run(cells[0])
        nb, _path = _saved(ui.nb, tmp_path, "noid.ipynb")
        problems = verify_notebook(nb).problems
        assert any("record(s) of session" in p and "missing" in p for p in problems), problems
    finally:
        ui.close()
