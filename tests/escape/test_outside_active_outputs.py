"""Outside review: the kernel relays script-bearing outputs from the sandbox to the live frontend.

Attack: a sandboxed cell displays ``application/javascript`` or ``text/html``
with a ``<script>`` / ``onerror=`` handler. JupyterLab treats every output
produced in the live session as trusted: it runs ``application/javascript``
(the javascript renderer ships with Lab) and evaluates the script tags of
trusted HTML. That script runs in the Jupyter server's origin, with the
user's cookies and XSRF token: it can ``POST /api/kernels`` (a ``python3``
kernel outside any sandbox), ``/api/terminals``, or write files through
``/api/contents`` -- code on the host, out of the sandbox, from one cell.
The README's rule "HTML/JS outputs are passed on as outputs, never executed
host-side" misses that the browser is on the host's side of the boundary.

Judged from the host, at the protocol level (a real glsandbox kernel over
ZMQ, what any frontend receives): no IOPub message of the cell carries an
``application/javascript`` bundle or active HTML (script tags, ``on*=``
handlers, ``javascript:`` URLs).

Fix (suggested): ``kernel/relay.py`` (``content_for``; the magic's
``magics/magic.py:_show`` too): drop JavaScript MIME types from sandbox
bundles and pass ``text/html`` (and SVG) through an allowlist sanitizer
(nh3, already an extra for the report), noting what was removed; or render
sandbox HTML only inside an ``isolated`` iframe the frontend sandboxes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, kernel_made

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest

pytestmark = pytest.mark.timeout(180)

ACTIVE_HTML = re.compile(r"<script|\bon[a-z]+\s*=|javascript:", re.IGNORECASE)

CELLS = {
    "javascript": (
        "from IPython.display import display, Javascript\n"
        "display(Javascript(\"fetch('/api/terminals', {method: 'POST'})\"))"
    ),
    "html-script": (
        "from IPython.display import display, HTML\n"
        "display(HTML(\"<b>chart</b><script>fetch('/api/kernels', {method: 'POST', "
        "body: JSON.stringify({name: 'python3'})})</script>\"))"
    ),
    "html-onerror": (
        "from IPython.display import display, HTML\n"
        "display(HTML('<img src=x onerror=\"fetch(`/api/contents/x.py`, {method: `PUT`})\">'))"
    ),
    "raw-bundle": (
        "from IPython.display import display\n"
        "display({'text/plain': 'ok', 'application/javascript': 'alert(document.cookie)'}, raw=True)"
    ),
}


@pytest.fixture(scope="module")
def kernel(glsandbox_kernelspec: str) -> Iterator[Kernel]:
    k = Kernel("glsandbox")
    try:
        yield k
    finally:
        k.shutdown()


def _active(msg: dict[str, Any]) -> list[str]:
    data = msg["content"].get("data") or {}
    found = [mime for mime in data if "javascript" in mime.lower() or "ecmascript" in mime.lower()]
    html = data.get("text/html")
    text = html if isinstance(html, str) else json.dumps(html)
    hit = ACTIVE_HTML.search(text) if html is not None else None
    if hit is not None:
        found.append("text/html: " + hit.group(0))
    return found


@pytest.mark.parametrize("name", sorted(CELLS))
def test_sandbox_outputs_reach_the_frontend_without_scripts(kernel: Kernel, name: str) -> None:
    reply, outputs = kernel.execute(CELLS[name], timeout=60)
    assert reply["status"] == "ok", reply
    shown = [
        m
        for m in outputs
        if m["msg_type"] in ("display_data", "execute_result", "update_display_data") and not kernel_made(m)
    ]
    active = {m["msg_type"]: _active(m) for m in shown if _active(m)}
    assert not active, f"{name}: script-bearing sandbox output relayed to the frontend: {active}"


@pytest.fixture(scope="module")
def ipykernel() -> Iterator[Kernel]:
    """A stock python3 IPython kernel with the magic loaded."""
    k = Kernel("python3")
    try:
        reply, _ = k.execute("%load_ext glsandbox_kernel")
        assert reply["status"] == "ok", reply
        yield k
    finally:
        k.shutdown()


def test_magic_outputs_reach_the_frontend_without_scripts(ipykernel: Kernel) -> None:
    """The same through ``%%sandbox`` (``magics/magic.py:_show`` republishes the sandbox's bundles)."""
    cell = "%%sandbox strict\n" + CELLS["javascript"]
    reply, outputs = ipykernel.execute(cell, timeout=60)
    assert reply["status"] == "ok", reply
    shown = [m for m in outputs if m["msg_type"] in ("display_data", "execute_result") and not kernel_made(m)]
    active = [_active(m) for m in shown if _active(m)]
    assert not active, f"script-bearing sandbox output relayed by the magic: {active}"


def test_sandbox_widget_state_reaches_the_frontend_without_active_html(kernel: Kernel) -> None:
    """The widget route: ``ipywidgets.HTML`` sets its value with ``innerHTML`` in the browser, so an
    ``onerror=`` handler in the state a sandboxed widget sends over its comm runs in the server's origin;
    sanitizing display_data alone leaves this open (``kernel/relay.py:IOPubRelay.comm``)."""
    cell = (
        "import ipywidgets\n"
        "w = ipywidgets.HTML(value='<img src=x onerror=\"fetch(`/api/terminals`, {method: `POST`})\">')\n"
        "w"
    )
    reply, outputs = kernel.execute(cell, timeout=60)
    assert reply["status"] == "ok", reply
    comms = [m for m in outputs if m["msg_type"] in ("comm_open", "comm_msg")]
    active = [m["msg_type"] for m in comms if ACTIVE_HTML.search(json.dumps(m["content"].get("data")))]
    assert not active, f"sandbox widget state with an active HTML handler relayed: {active}"
