"""Script-free sandbox outputs for the browser, host side of the trust boundary.

The browser is on the host's side of the boundary: JupyterLab treats every
output of the live session as trusted, so it runs ``application/javascript``
and the ``<script>`` tags and ``on*=`` handlers of ``text/html`` in the
Jupyter server's origin, with the user's token (``/api/kernels``,
``/api/terminals``, ``/api/contents``: code on the host). ipywidgets'
``HTML`` model sets its value with ``innerHTML``, and the ``Output`` widget
renders the bundles in its state as trusted outputs. So, before anything the
sandbox made reaches a frontend:

- script MIME types (JavaScript, Bokeh/HoloViews exec/load bundles) are dropped;
- ``text/latex`` is kept only when every TeX macro in it is a plain math macro
  (:data:`LATEX_MACROS`): MathJax/KaTeX also know ``\\href{javascript:...}``,
  ``\\class``, ``\\style``, ``\\cssId``, ``\\unicode``, ``\\require``, ``\\def``
  ..., so a formula with any other macro is dropped (its ``text/plain`` stays);
  an allowlist, not a list of known-bad macros, and no rewriting of TeX;
- ``text/html`` (and ``*+html``) and ``image/svg+xml`` pass through an
  allowlist sanitizer (nh3, the Ammonia library): no scripts, no event
  handlers, no ``javascript:`` URLs, no frames/objects/forms, images only
  from ``data:`` URLs and no style that fetches (a browser fetch would leave
  the sandbox's network policy behind); ``text/markdown`` that could hold a
  link, an image or HTML is rendered (CommonMark) and sent as that sanitized
  ``text/html`` instead;
- in widget state and comm data, the same for every bundle, code-carrying keys
  (anywidget's ``_esm``) dropped, and every string whose markup the sanitizer
  would change replaced by its sanitized form (widgets render some strings as
  HTML with ``innerHTML``; plain text such as ``a < b`` stays as it is).

Plain data (text/plain, JSON, PNG, ...) is kept as it is. What was removed is
named in ``notes`` (the kernel shows one notice per cell). Each function
returns its argument itself when nothing changed, so callers can tell.

Who calls: :mod:`glsandbox_kernel.kernel.relay` (outputs, comm frames, the
pager payload), :mod:`glsandbox_kernel.kernel.kernel` (execute_reply
``user_expressions``), :mod:`glsandbox_kernel.kernel.quick` (inspect replies) and
:mod:`glsandbox_kernel.magics.magic` (``%%sandbox`` republishing).
"""

from __future__ import annotations

import html
import re
from typing import Any

from .active_tex import LATEX_MACROS, defuse_tex, latex_refusal  # noqa: F401 - LATEX_MACROS re-exported
from .terminal_text import printable, safe_text

Notes = list[str] | None

#: MIME types whose content a frontend runs as code (beyond anything naming JavaScript/ECMAScript)
SCRIPT_MIMETYPES = frozenset(
    {
        "application/vnd.bokehjs_exec.v0+json",
        "application/vnd.bokehjs_load.v0+json",
        "application/vnd.holoviews_exec.v0+json",
        "application/vnd.holoviews_load.v0+json",
        "application/vnd.jupyter.widget-state+json",
        "text/x-javascript",
        "application/wasm",
    }
)

#: MIME types kept as they are: plain data and raster images a frontend only displays. Every other
#: type is removed (an allowlist: Vega/Vega-Lite, Plotly, GeoJSON and other ``*+json`` renderers fetch
#: URLs with the user's cookies or run code), besides the markup types that are sanitized below.
KEPT_MIMETYPES = frozenset(
    {
        "text/plain",
        "application/json",
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "application/vnd.jupyter.widget-view+json",
    }
)

#: widget state keys whose value the frontend runs as code (anywidget's JavaScript module and its CSS)
SCRIPT_STATE_KEYS = frozenset({"_esm", "_css", "_anywidget_esm"})

#: what marks markup as active (for the notice only; the sanitizer is an allowlist)
_ACTIVE = re.compile(
    r"<\s*/?\s*(script|iframe|frame|object|embed|link|meta|base|form|foreignobject)\b"
    r"|\bon[a-z]+\s*=|javascript\s*:|vbscript\s*:|\bsrcdoc\s*=",
    re.IGNORECASE,
)


_STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font-weight", "font-style", "font-size", "font-family", "text-align",
        "text-decoration", "vertical-align", "white-space", "border", "border-collapse", "border-color",
        "border-style", "border-width", "padding", "padding-left", "padding-right", "padding-top",
        "padding-bottom", "margin", "margin-left", "margin-right", "width", "height", "max-width",
        "min-width", "display", "opacity", "fill", "fill-opacity", "stroke", "stroke-width", "stroke-opacity",
        "stroke-linecap", "stroke-linejoin", "stroke-dasharray", "stroke-dashoffset", "stroke-miterlimit",
        "clip-path", "font-variant", "text-anchor", "dominant-baseline", "line-height",
    }
)  # fmt: skip

_HTML_TAGS = frozenset(
    {"div", "span", "pre", "code", "img", "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption",
     "details", "summary", "section", "font", "label", "progress", "meter"}
)  # fmt: skip
_HTML_ATTRIBUTES = {
    "*": {"class", "title", "lang", "dir", "align", "style"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "table": {"border", "cellpadding", "cellspacing"},
    "ol": {"start"},
    "font": {"color", "size", "face"},
    "progress": {"value", "max"},
    "meter": {"value", "min", "max"},
}

_SVG_TAGS = frozenset(
    {"svg", "g", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "text", "tspan",
     "textPath", "defs", "clipPath", "linearGradient", "radialGradient", "stop", "title", "desc", "symbol",
     "use", "marker", "pattern", "mask", "image", "metadata"}
)  # fmt: skip
_SVG_ATTRIBUTES = {
    "*": {
        "id", "class", "style", "transform", "d", "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "rx",
        "ry", "width", "height", "points", "viewBox", "preserveAspectRatio", "fill", "fill-opacity",
        "fill-rule", "stroke", "stroke-width", "stroke-opacity", "stroke-linecap", "stroke-linejoin",
        "stroke-dasharray", "stroke-dashoffset", "stroke-miterlimit", "opacity", "clip-path", "clip-rule",
        "clipPathUnits", "mask", "font-family", "font-size", "font-weight", "font-style", "text-anchor",
        "dominant-baseline", "dx", "dy", "rotate", "offset", "stop-color", "stop-opacity",
        "gradientUnits", "gradientTransform", "patternUnits", "patternTransform", "markerWidth",
        "markerHeight", "refX", "refY", "orient", "markerUnits", "version", "href", "xlink:href",
        "marker-start", "marker-mid", "marker-end", "visibility", "display", "letter-spacing",
    },
}  # fmt: skip


#: attributes whose value is CSS (a style) or may reference a resource with ``url(...)`` (SVG paint, clips)
_CSS_ATTRIBUTES = frozenset(
    {"style", "fill", "stroke", "clip-path", "mask", "marker-start", "marker-mid", "marker-end", "filter"}
)
#: CSS that fetches (or runs) beyond ``url(``: escapes (``\\75 rl(`` is ``url(``), imports, image functions
_CSS_FETCH = re.compile(r"\\|@import|expression\s*\(|image(-set)?\s*\(|cross-fade\s*\(|element\s*\(|src\s*\(", re.I)
_CSS_URL = re.compile(r"url\s*\(\s*['\"]?\s*([^)'\"\s]*)", re.I)


def _css_fetches(value: str) -> bool:
    """Whether a CSS value could make the browser fetch something (fail closed): any ``url(`` not to
    ``#fragment`` (within the document), any image function, ``@import``, ``expression(`` or escape."""
    bare = re.sub(r"/\*.*?(\*/|$)", "", value, flags=re.S)
    if _CSS_FETCH.search(bare):
        return True
    return any(not target.startswith("#") for target in _CSS_URL.findall(bare))


def _url_filter(tag: str, attribute: str, value: str) -> str | None:
    """nh3 attribute filter: images only from ``data:image/`` URLs, SVG references only within the
    document, no style declaration or SVG paint that fetches (nh3 checks style property names only)."""
    if attribute in ("src", "href", "xlink:href"):
        lowered = value.strip().lower()
        if tag in ("img", "image") and not lowered.startswith("data:image/"):
            return None
        if tag == "use" and not lowered.startswith("#"):
            return None
    if attribute == "class" and "glsandbox" in value:  # the kernel's own audit-line look is not the sandbox's
        kept_classes = [c for c in value.split() if not c.startswith("glsandbox")]
        return " ".join(kept_classes) or None
    if attribute == "style":
        kept = [d for d in value.split(";") if not _css_fetches(d)]
        return ";".join(kept) if any(d.strip() for d in kept) else None
    if attribute in _CSS_ATTRIBUTES and _css_fetches(value):
        return None
    return value


_STATE_FETCH = re.compile(
    r"@import|expression\s*\(|image(-set)?\s*\(|cross-fade\s*\(|element\s*\(|src\s*\(|url\s*\(", re.I
)
_CSS_ESCAPE = re.compile(r"\\([0-9a-fA-F]{1,6})\s?|\\(.)", re.S)


def _css_fetches_state(value: str) -> bool:
    """A widget state string that would fetch if a view set it as CSS (ipywidgets' style models do):
    judged after CSS escapes are decoded, only when a fetching function appears (plain text stays)."""
    if "\\" in value:
        value = _CSS_ESCAPE.sub(lambda m: chr(min(int(m[1], 16), 0x10FFFF) or 0xFFFD) if m[1] else m[2], value)
    return bool(_STATE_FETCH.search(value)) and (_css_fetches(value.replace("\\", "")) or "url" not in value.lower())


def clean_html(markup: str) -> str:
    """``markup`` with everything that could run, fetch or submit removed (allowlist)."""
    import nh3

    tags = (set(nh3.ALLOWED_TAGS) | _HTML_TAGS) - {"area", "map"}
    return nh3.clean(
        markup,
        tags=tags,
        clean_content_tags={"script", "style"},
        attributes=_HTML_ATTRIBUTES,
        attribute_filter=_url_filter,
        filter_style_properties=_STYLE_PROPERTIES,
        url_schemes={"http", "https", "mailto", "data"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def clean_svg(markup: str) -> str:
    """An SVG document with scripts, handlers, ``foreignObject`` and outside references removed.

    Namespace declarations are put back on the root (the sanitizer drops them and a
    frontend that shows SVG as an image needs them to parse it).
    """
    import nh3

    body = nh3.clean(
        markup,
        tags=set(_SVG_TAGS),
        clean_content_tags={"script", "style", "foreignObject"},
        attributes=_SVG_ATTRIBUTES,
        attribute_filter=_url_filter,
        filter_style_properties=_STYLE_PROPERTIES,
        url_schemes={"data"},
        link_rel=None,
        strip_comments=True,
    ).strip()

    def namespaces(match: re.Match[str]) -> str:
        head = match.group(0)
        extra = ""
        if "xmlns=" not in head:
            extra += ' xmlns="http://www.w3.org/2000/svg"'
        if "xmlns:xlink=" not in head:
            extra += ' xmlns:xlink="http://www.w3.org/1999/xlink"'
        return head[:4] + extra + head[4:]

    return re.sub(r"<svg\b[^>]*>", namespaces, body, count=1)


#: markdown longer than this is shown as its text (escaped, in a ``<pre>``), not rendered: the renderer
#: is pure Python (about 10 µs a byte of hostile input on this host), the sanitizer is not
MAX_MARKDOWN_RENDER = 256 << 10


def clean_markdown(text: str) -> str:
    """Sandbox markdown as sanitized HTML: the frontend gets this as ``text/html``, never the markdown.

    Rendered by a CommonMark parser (mistune, as nbconvert does; raw HTML kept for the sanitizer) and
    passed through :func:`clean_html`, so what the browser sees is only what the HTML allowlist lets
    through (images only from ``data:image/``, no ``javascript:``), whatever a frontend's own markdown
    parser would have made of the text: rewriting targets in the markdown itself missed nested brackets,
    links around images and references in quotes. Too long or unparsable: the escaped text (fail closed).
    """
    rendered = None
    if len(text) <= MAX_MARKDOWN_RENDER:
        try:
            import mistune

            # a new renderer for each call: relay threads may call at once
            render = mistune.create_markdown(escape=False, plugins=["strikethrough", "table", "math"])
            out = render(text)
            rendered = out if isinstance(out, str) else None
        except Exception:  # noqa: BLE001 - any parser failure (RecursionError too): shown as text
            rendered = None
    return clean_html(rendered if rendered is not None else f"<pre>{html.escape(text)}</pre>")


def _kind(mime: str) -> str | None:
    """How a bundle entry is treated: "drop", "html", "svg", "markdown", "latex", or None (kept)."""
    m = mime.lower().split(";")[0].strip()
    if "javascript" in m or "ecmascript" in m or m in SCRIPT_MIMETYPES:
        return "drop"
    if m in ("text/html", "application/xhtml+xml") or m.endswith("+html"):
        return "html"
    if m == "image/svg+xml":
        return "svg"
    if m == "text/markdown":
        return "markdown"
    if m == "text/latex" and mime == mime.strip():
        return "latex"
    if m in KEPT_MIMETYPES and mime == mime.strip():
        return None
    return "drop"


_CLEANERS = {"html": clean_html, "svg": clean_svg}


def clean_bundle(data: dict[str, Any], notes: Notes = None) -> dict[str, Any]:
    """A MIME bundle without script types and with its markup sanitized; ``data`` itself if unchanged."""
    out: dict[str, Any] | None = None
    for mime, value in data.items():
        kind = _kind(mime) if isinstance(mime, str) else None
        if kind is None:
            continue
        if out is None:
            out = dict(data)
        if kind == "drop":
            del out[mime]
            _note(
                notes, f"{mime} output removed (not a type the sandbox may show: it could run or fetch in the browser)"
            )
            continue
        text = "".join(str(x) for x in value) if isinstance(value, list) else value
        if not isinstance(text, str):
            del out[mime]
            _note(notes, f"a non-text {mime} output removed")
            continue
        text = safe_text(text, notes)  # the sanitizers raise on a lone surrogate
        if kind == "latex":
            macro = latex_refusal(text)
            if macro is None:
                out[mime] = text
            else:
                del out[mime]
                _note(notes, f"text/latex output removed (the macro \\{macro} is not a plain math macro)")
            continue
        if kind == "markdown":
            if not any(c in text for c in "<:]&"):  # no link, image, reference or HTML can form: kept
                continue
            del out[mime]  # shown as sanitized HTML instead (the bundle's own HTML, if any, wins)
            if not any(isinstance(m, str) and _kind(m) == "html" for m in data):
                out["text/html"] = defuse_tex(clean_markdown(text))
        else:
            out[mime] = _CLEANERS[kind](text)
            if kind == "html":
                out[mime] = defuse_tex(out[mime])  # JupyterLab typesets $...$ in HTML outputs too
        if _ACTIVE.search(text):
            _note(notes, f"active content (scripts, handlers, frames) removed from {mime}")
    return data if out is None or out == data else out


def clean_frame(frame: dict[str, Any], notes: Notes = None) -> dict[str, Any]:
    """A worker output frame with its bundle cleaned (display/update/execute_result); ``frame`` if unchanged.

    The metadata's ``glsandbox`` key (the kernel's roles, e.g. the audit line's) is dropped: sandboxed
    output must not pose as kernel-made for a reader or a tool reading roles.
    """
    data = frame.get("data")
    if frame.get("type") not in ("display_data", "update_display_data", "execute_result") or not isinstance(data, dict):
        return frame
    cleaned = clean_bundle(data, notes)
    metadata = frame.get("metadata")
    if isinstance(metadata, dict) and "glsandbox" in metadata:
        _note(notes, "the kernel's own glsandbox output metadata removed")
        frame = {**frame, "metadata": {k: v for k, v in metadata.items() if k != "glsandbox"}}
    return frame if cleaned is data else {**frame, "data": cleaned}


def clean_payload(payload: dict[str, Any], notes: Notes = None) -> dict[str, Any]:
    """A ``page`` payload (the pager shows its bundle) with its bundle cleaned; ``payload`` if unchanged.

    ``set_next_input`` keeps only its text and never replaces: with ``replace`` the sandboxed
    cell would rewrite the analyst's own code in the frontend, unseen, and the notebook save it.
    """
    if payload.get("source") == "set_next_input":
        if payload.get("replace"):
            _note(notes, "set_next_input asked to replace the cell's code (offered as a new cell)")
        text = payload.get("text")
        return {"source": "set_next_input", "text": text if isinstance(text, str) else "", "replace": False}
    data = payload.get("data")
    if not isinstance(data, dict):
        return payload
    cleaned = clean_bundle(data, notes)
    return payload if cleaned is data else {**payload, "data": cleaned}


def clean_user_expressions(value: Any, notes: Notes = None) -> dict[str, Any]:
    """execute_reply ``user_expressions`` (JSON-safe already) as the protocol shapes them, cleaned.

    Each entry is ``{"status": "ok", "data": bundle, "metadata": dict}`` with
    its bundle cleaned like any output, or ``{"status": "error", "ename",
    "evalue", "traceback"}`` with text only; anything else is dropped. The
    sandboxed shell computes them, so hostile code may have chosen every byte.
    """
    out: dict[str, Any] = {}
    if not isinstance(value, dict):
        return out
    for name, item in value.items():
        if not isinstance(item, dict):
            continue
        if item.get("status") == "ok":
            data, metadata = item.get("data"), item.get("metadata")
            out[str(name)] = {
                "status": "ok",
                "data": clean_bundle(data, notes) if isinstance(data, dict) else {},
                "metadata": metadata if isinstance(metadata, dict) else {},
            }
            continue
        traceback = item.get("traceback")
        out[str(name)] = {
            "status": "error",
            "ename": str(item.get("ename", "Error")),
            "evalue": str(item.get("evalue", "")),
            "traceback": [str(x) for x in traceback] if isinstance(traceback, list) else [],
        }
    return out


def clean_state(value: Any, notes: Notes = None, depth: int = 0) -> Any:
    """Widget state / comm data: bundles cleaned, script MIME keys dropped, every string with ``<``
    sanitized as HTML (``ipywidgets.HTML`` and HTML descriptions use ``innerHTML``). ``value`` if unchanged."""
    if depth > 64:
        return value
    if isinstance(value, str):
        value = safe_text(value, notes)  # the sanitizer raises on a lone surrogate
        if _css_fetches_state(value):  # a widget style value (ipywidgets sets it as CSS)
            _note(notes, "a style that fetches removed from a sandbox widget's state")
            return ""
        tex = defuse_tex(value)  # HTMLMath and descriptions are typeset
        if tex is not value:
            _note(notes, "TeX macros outside the plain math set broken in a sandbox widget's state")
            value = tex
        if "<" not in value:
            return value
        cleaned = clean_html(value)
        if html.unescape(cleaned) == value:  # nothing removed, only escaped: plain text stays as it was
            return value
        _note(notes, "HTML the sanitizer does not allow removed from a sandbox widget's state")
        return cleaned
    if isinstance(value, list):
        items = [clean_state(v, notes, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        original = value
        if isinstance(value.get("data"), dict) and "output_type" in value:  # an Output widget's output
            bundle = clean_bundle(value["data"], notes)
            if bundle is not value["data"]:
                value = {**value, "data": bundle}
        out: dict[str, Any] = {}
        changed = value is not original
        for k, v in value.items():
            kind = _kind(k) if isinstance(k, str) and "/" in k else None
            if kind == "drop" or k in SCRIPT_STATE_KEYS:
                _note(notes, f"{k} removed from a sandbox widget's state")
                changed = True
                continue
            cleaned = clean_state(v, notes, depth + 1)
            changed = changed or cleaned is not v
            out[k] = cleaned
        return out if changed else original
    return value


def _note(notes: Notes, why: str) -> None:
    """Add ``why`` (it may name a sandbox-chosen MIME type: escaped and cut) to ``notes``."""
    why = " ".join(printable(why).split())  # one line: a MIME name may not start a line of its own
    why = why if len(why) <= 160 else why[:157] + "..."
    if notes is not None and why not in notes:
        notes.append(why)


#: the widget libraries whose views a frontend ships itself (ipywidgets): any other module name is
#: code the frontend would load (from a URL, by requirejs, from a CDN fallback) and run
WIDGET_MODULES = frozenset({"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"})
_MODULE_KEYS = ("_model_module", "_view_module")


def widget_refusal(kind: str, content: dict[str, Any]) -> str | None:
    """Why a sandbox comm frame may not reach the frontend, or None (host side, for the relay).

    Only ipywidgets' own comms (target ``jupyter.widget``) with modules the
    frontend ships (:data:`WIDGET_MODULES`); no media widget that loads a URL
    (``format: "url"``: a fetch past the network policy).
    """
    if kind == "comm_open" and content.get("target_name") != "jupyter.widget":
        return f"comm target {str(content.get('target_name'))[:60]!r} is not ipywidgets'"
    data = content.get("data")
    states = data.get("states") if isinstance(data, dict) and data.get("method") == "update_states" else None
    if isinstance(states, dict):  # the answer on the widget control comm: every widget's state at once
        for entry in states.values():
            entry = entry if isinstance(entry, dict) else {}
            state = entry.get("state")
            why = _state_refusal({"_model_module": entry.get("model_module")}) or _state_refusal(
                state if isinstance(state, dict) else {}
            )
            if why is not None:
                return why
        return None
    state = data.get("state") if isinstance(data, dict) else None
    return _state_refusal(state) if isinstance(state, dict) else None


def _state_refusal(state: dict[str, Any]) -> str | None:
    for key in _MODULE_KEYS:
        module = state.get(key)
        if module is not None and module not in WIDGET_MODULES:
            return f"widget module {str(module)[:60]!r} is not one the frontend ships"
    if state.get("format") == "url":
        return "a media widget loading a URL"
    return None
