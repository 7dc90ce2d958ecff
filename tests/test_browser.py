"""JupyterLab in a real browser: the live widget's memory figure rises, the violation banner shows.

JupyterLab (from PyPI) serves a temporary directory on 127.0.0.1 with a random
token; headless Chromium from Debian (``/usr/bin/chromium``, never a
downloaded browser) is driven by Playwright. Screenshots are kept in
``test-artifacts/`` (one is copied to ``docs/widget.png`` for the README).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from .conftest import ROOT
from .jupyter_fixtures import glsandbox_kernelspec

__all__ = ["glsandbox_kernelspec"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = os.path.join(ROOT, "test-artifacts")

ALLOCATE = """\
import time
blocks = []
for i in range(20):
    blocks.append(bytearray(16 * 2**20))
    time.sleep(0.3)
print(len(blocks), "blocks")"""

PTRACE = """\
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace returned", libc.ptrace(16, 1, 0, 0))"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab(glsandbox_kernelspec: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium): apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(ALLOCATE), nbformat.v4.new_code_cell(PTRACE)]
    nbformat.write(nb, str(root / "monitor.ipynb"))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
    }
    log = open(base / "lab.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.open_browser=False",
            "--LabApp.news_url=",
            "--ServerApp.port_retries=0",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start:\n" + (base / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
        yield {"url": url, "token": token, "root": root}
    finally:
        # Shut the kernels down through the server, then stop the server (our own process group).
        try:
            req = urllib.request.Request(f"{url}/api/kernels?token={token}")
            with urllib.request.urlopen(req, timeout=5) as r:
                for kernel in json.load(r):
                    urllib.request.urlopen(
                        urllib.request.Request(f"{url}/api/kernels/{kernel['id']}?token={token}", method="DELETE"),
                        timeout=20,
                    ).close()
        except OSError:
            pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def _readme_screenshot(page: Any) -> None:
    """The running cell with its live widget, for the README (docs/widget.png).

    Written when missing or with GLSANDBOX_UPDATE_SCREENSHOT=1, so test runs
    do not rewrite a tracked file; the full-window shots stay in test-artifacts/.
    """
    cell = os.path.join(ARTIFACTS, "widget-cell.png")
    page.locator(".jp-Notebook .jp-Cell").nth(0).screenshot(path=cell)
    target = os.path.join(ROOT, "docs", "widget.png")
    if not os.path.exists(target) or os.environ.get("GLSANDBOX_UPDATE_SCREENSHOT") == "1":
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(cell, target)


def _shot(page: Any, name: str) -> str:
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    page.screenshot(path=path, full_page=False)
    return path


def test_live_widget_and_banner_in_jupyterlab(lab: dict[str, Any], tmp_path: Any) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.goto(f"{lab['url']}/lab/tree/monitor.ipynb?token={lab['token']}", timeout=90_000)
            # the kernel is ready when the status says Idle
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_function(
                "() => !!document.querySelector('.jp-Notebook') && "
                "[...document.querySelectorAll('.jp-StatusBar-TextItem, .jp-Toolbar-kernelStatus')]"
                ".some(e => /Idle/.test(e.textContent || e.getAttribute('title') || ''))",
                timeout=120_000,
            )
            page.locator(".jp-Notebook .jp-Cell").nth(0).locator(".cm-content").click()
            page.keyboard.press("Shift+Enter")

            # the live widget appears after ~0.5 s; read its memory figure while the cell runs
            page.wait_for_selector(".glsandbox-monitor .glsandbox-mem", timeout=60_000)
            values: list[int] = []
            shot = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                raw = page.evaluate(
                    "() => { const e = document.querySelector('.glsandbox-monitor .glsandbox-mem');"
                    " return e ? e.getAttribute('data-bytes') : null; }"
                )
                if raw is None:
                    break  # frozen into the summary: the cell ended
                if raw:
                    values.append(int(raw))
                if (
                    shot is None
                    and len(values) >= 8
                    and page.query_selector(".glsandbox-monitor img, .jupyter-widgets img")
                ):
                    shot = _shot(page, "widget-live.png")
                    _readme_screenshot(page)
                time.sleep(0.3)
            assert len(values) >= 5, values
            assert values[-1] > values[0] + 96 * 2**20, values
            assert shot is not None, "no screenshot of the live widget with its chart"

            page.wait_for_selector(".glsandbox-summary", timeout=60_000)
            assert "peak memory" in page.inner_text(".glsandbox-summary")
            _shot(page, "widget-frozen.png")

            # the violating cell: the red banner, and the cell stopped
            page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".cm-content").click()
            page.keyboard.press("Shift+Enter")
            page.wait_for_selector(".glsandbox-violations", timeout=60_000)
            page.wait_for_function(
                "() => /stopped/.test((document.querySelector('.glsandbox-violations') || {}).textContent || '')",
                timeout=60_000,
            )
            banner = page.inner_text(".glsandbox-violations")
            assert "ptrace" in banner and "denied" in banner
            _shot(page, "violation-banner.png")
        finally:
            context.close()
