"""Outside review, end to end: a sandboxed cell writes a file on the host through JupyterLab.

Attack (see ``test_outside_active_outputs.py`` for the protocol-level
reproducer): the cell displays ``application/javascript``; JupyterLab runs
it as a trusted live output in the server's origin; it reads the server
token from the page's ``jupyter-config-data`` and ``PUT``s a file through
``/api/contents``. The target is the notebook's own folder, which the
MODERATE sandbox sees read-only (its writes there fail with EROFS): the file
lands on the host anyway. The same call could start an unsandboxed
``python3`` kernel (``/api/kernels``) and run anything.

Judged from the host: after the cell ran in headless Chromium, the file is
not in the project folder.

Heavy (JupyterLab + Chromium, ~1 minute): marked ``browser`` like
``tests/jupyter/test_browser.py``, whose ``lab`` fixture it uses.
"""

from __future__ import annotations

import time
from typing import Any

import nbformat
import pytest

from ..jupyter.test_browser import CHROMIUM, CHROMIUM_ARGS, lab
from ..jupyter_fixtures import glsandbox_kernelspec

__all__ = ["glsandbox_kernelspec", "lab"]  # fixtures, imported for pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELL = """\
import os
try:
    open("direct-write.txt", "w").write("x")
    print("direct write: ok")
except OSError as exc:
    print("direct write refused:", exc.errno)
from IPython.display import Javascript, display
display(Javascript('''
const token = JSON.parse(document.getElementById("jupyter-config-data").textContent).token;
fetch("/api/contents/escaped-by-the-sandbox.txt", {
  method: "PUT",
  headers: {"Authorization": "token " + token, "Content-Type": "application/json"},
  body: JSON.stringify({type: "file", format: "text", content: "written from inside the sandbox"}),
});
'''))
"""


def test_sandboxed_cell_cannot_write_the_project_through_the_browser(lab: dict[str, Any], tmp_path: Any) -> None:
    from playwright.sync_api import sync_playwright

    root = lab["root"]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    nbformat.write(nb, str(root / "escape.ipynb"))
    target = root / "escaped-by-the-sandbox.txt"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = context.new_page()
            page.goto(f"{lab['url']}/lab/tree/escape.ipynb?token={lab['token']}", timeout=90_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-StatusBar-TextItem, .jp-Toolbar-kernelStatus')]"
                ".some(e => /Idle/.test(e.textContent || e.getAttribute('title') || ''))",
                timeout=120_000,
            )
            page.locator(".jp-Notebook .jp-Cell").nth(0).locator(".cm-content").click()
            page.keyboard.press("Shift+Enter")
            page.wait_for_selector(".jp-OutputArea-output", timeout=90_000)
            shown = page.inner_text(".jp-Notebook .jp-Cell >> nth=0")
            deadline = time.monotonic() + 20  # the script's request, if it runs, lands within this
            while time.monotonic() < deadline and not target.exists():
                time.sleep(0.5)
        finally:
            context.close()
    assert "direct write refused" in shown, shown  # the sandbox itself cannot write here
    assert not (root / "direct-write.txt").exists()
    assert not target.exists(), f"the sandboxed cell wrote {target} on the host: {target.read_text()!r}"
