"""JupyterLab and headless Chromium for the browser tests (test side: drives the pages, runs no sandbox code).

``lab`` serves a temporary directory with JupyterLab (from PyPI) on 127.0.0.1 with a
random token, its settings without news or update checks; :func:`browser` launches
Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser) through
Playwright, records every request the pages make and blocks every one that would
leave the machine. :func:`shot` keeps a screenshot in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from ..conftest import ROOT
from ..jupyter_fixtures import jupyter_server

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


@pytest.fixture(scope="module")
def lab(glsandbox_kernelspec: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """JupyterLab on 127.0.0.1 for one test module (``url``, ``token``, ``root``, ``log``), glsandbox kernels."""
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
    env = {
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "GLSANDBOX_AUDIT_KEY": None,  # the server holds no key: the run's signed seal must survive
    }
    with jupyter_server(
        base,
        root,
        app="jupyterlab",
        env=env,
        # window.jupyterapp: the tests run JupyterLab's commands and read its sessions
        args=("--no-browser", "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True"),
        timeout=90,
    ) as server:
        yield server


def shot(page: Any, name: str) -> str:
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    page.screenshot(path=path, full_page=False)
    return path


def browser(pw: Any, profile: Any) -> tuple[Any, list[str], list[str]]:
    """A Chromium context that records every request and blocks those that would leave the machine."""
    context = pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
    )
    seen: list[str] = []
    blocked: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        host = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
        if url.startswith(("file:", "data:", "about:", "blob:")) or host in ("127.0.0.1", "localhost", "[::1]"):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    context.on("request", lambda req: seen.append(req.url))
    return context, seen, blocked
