"""``glsandbox report NOTEBOOK -o evidence.html``: an HTML evidence report that the evidence cannot rewrite (host side).

Who calls: the ``glsandbox`` CLI (:func:`add_report_parser`) and tests
(:func:`build_report`). The page has two parts:

- the verdict (:func:`~.verify.verify_notebook`), the problems, warnings and
  notes, and a table of every code cell (level, backend, status, wall and CPU
  time, peak memory, violations, and whether its source, outputs, chain and
  signature check out) — written by this module, in the top-level document;
- the notebook itself, rendered by nbconvert's ``basic`` template (no
  require.js, no MathJax, no CDN), **sanitized with nh3** (the Ammonia
  sanitizer: no ``<script>``, no event handlers, no ``<style>``, no
  ``javascript:`` URLs, images only as ``data:``) and placed in an
  ``<iframe sandbox srcdoc=...>`` without ``allow-scripts`` or
  ``allow-same-origin``, so nothing in it can reach the verdict or draw over it.

The top-level document carries a Content-Security-Policy that forbids every
script and every fetch (``default-src 'none'``; inline styles and ``data:``
images only), which the framed notebook inherits. The report is one
self-contained file; opening it makes no network request. No code from the
notebook runs here or in the browser.
"""

from __future__ import annotations

import argparse
import copy
import html
import sys
from collections.abc import Mapping
from typing import Any

from ..cli_options import add_notebook_command, beside_notebook
from ..host_files import replace_file
from ..terminal_text import printable
from .evidence import fmt_bytes, fmt_seconds, record_figures, record_status
from .held_records import number_or_none
from .seal import sealed_by_note
from .verify import METADATA_KEY, CellCheck, NotebookVerifyResult, verify_notebook

_CSS = """
.glsandbox-report { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px;
  margin: 16px auto; max-width: 1100px; padding: 0 16px; }
.glsandbox-report h1 { font-size: 20px; margin: 8px 0; }
.glsandbox-report .verdict { padding: 8px 12px; border-radius: 4px; margin: 8px 0; }
.glsandbox-report .verdict.ok { background: #e8f5e9; border-left: 5px solid #2e7d32; }
.glsandbox-report .verdict.failed { background: #fdecea; border-left: 5px solid #c62828; }
.glsandbox-report table { border-collapse: collapse; width: 100%; margin: 8px 0; }
.glsandbox-report th, .glsandbox-report td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; }
.glsandbox-report th { background: #f5f5f5; }
.glsandbox-report td.num { text-align: right; font-variant-numeric: tabular-nums; }
.glsandbox-report .bad { color: #c62828; font-weight: bold; }
.glsandbox-report .good { color: #2e7d32; }
.glsandbox-report dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }
.glsandbox-report dt { font-weight: bold; }
"""


def _mark(value: bool | None) -> str:
    if value is None:
        return "<td>-</td>"
    return '<td class="good">yes</td>' if value else '<td class="bad">NO</td>'


def _row(check: CellCheck) -> str:
    record = check.record or {}
    metrics, violations, wall, cpu = record_figures(record)
    status = record_status(record) if record else ("not executed" if not check.executed else "no record")
    status_cls = "good" if status == "ok" else "bad"
    viol = str(len(violations))
    if violations:
        details = "; ".join(str(v.get("detail") or v.get("syscall") or v.get("kind")) for v in violations[:5])
        viol = f'<span class="bad" title="{html.escape(details)}">{len(violations)}</span>'
    count = check.execution_count if check.execution_count is not None else ""
    return (
        f"<tr><td>{check.index + 1}</td><td>{count}</td>"
        f"<td>{html.escape(str(record.get('security_level', '-')))}</td>"
        f"<td>{html.escape(str(record.get('isolation_type', '-')))}</td>"
        f'<td class="{status_cls}">{html.escape(status)}</td>'
        f'<td class="num">{fmt_seconds(wall) if wall is not None else "-"}</td>'
        f'<td class="num">{fmt_seconds(cpu) if cpu is not None else "-"}</td>'
        f'<td class="num">{fmt_bytes(number_or_none(metrics.get("memory_peak_bytes"))) if metrics else "-"}</td>'
        f'<td class="num">{viol}</td>'
        f"{_mark(check.source_ok)}{_mark(check.outputs_ok)}{_mark(check.chain_ok)}"
        f"{_mark(check.signature_ok) if check.signature_ok is not None else '<td>-</td>'}"
        f"<td>{html.escape(str(record.get('record_hash', ''))[:12])}</td></tr>"
    )


def summary_html(
    nb: Mapping[str, Any], result: NotebookVerifyResult, *, title: str, strict: NotebookVerifyResult | None = None
) -> str:
    """The block at the top of the report: verdict (and the strict one), problems, table, run metadata."""
    verdict_cls = "ok" if result.ok else "failed"
    parts = [
        f'<div class="glsandbox-report"><style>{_CSS}</style>',
        f"<h1>glsandbox evidence report: {html.escape(title)}</h1>",
        f'<div class="verdict {verdict_cls}" id="glsandbox-verification"><b>Verification: '
        f"{html.escape(result.summary())}</b>",
    ]
    if result.problems:
        parts.append("<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in result.problems) + "</ul>")
    if result.warnings:
        parts.append("<ul>" + "".join(f"<li>warning: {html.escape(w)}</li>" for w in result.warnings) + "</ul>")
    if result.notes:
        parts.append("<ul>" + "".join(f"<li><i>note: {html.escape(n)}</i></li>" for n in result.notes) + "</ul>")
    if strict is not None:
        extra = [p for p in strict.problems if p not in result.problems]
        parts.append(
            f'<div id="glsandbox-strict-verification"><b>Strict verification (verify --strict): '
            f"{'OK' if strict.ok else 'FAILED'}</b>"
            + ("<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in extra) + "</ul>" if extra else "")
            + "</div>"
        )
    parts.append("</div>")
    parts.append(
        '<table id="glsandbox-cells"><thead><tr><th>cell</th><th>In</th><th>level</th><th>backend</th>'
        "<th>status</th><th>wall</th><th>CPU</th><th>peak memory</th><th>violations</th><th>source ok</th>"
        "<th>outputs ok</th><th>chain ok</th><th>signature ok</th><th>record</th></tr></thead><tbody>"
        + "".join(_row(c) for c in result.cells)
        + "</tbody></table>"
    )
    meta = nb.get("metadata") or {}
    info = meta.get(METADATA_KEY) if isinstance(meta, Mapping) else None
    if isinstance(info, Mapping) and not result.sealed:  # made up or edited: nothing covers it (review 23)
        parts.append("<h2 style='font-size:15px'>Run</h2><p>not sealed: the notebook's run metadata is not shown</p>")
    elif isinstance(info, Mapping):
        rows = []
        config = info.get("config") if isinstance(info.get("config"), Mapping) else {}
        env = info.get("environment") if isinstance(info.get("environment"), Mapping) else {}
        run = info.get("run") if isinstance(info.get("run"), Mapping) else {}
        assert isinstance(config, Mapping) and isinstance(env, Mapping) and isinstance(run, Mapping)
        for label, value in (
            ("level", config.get("level")),
            ("backend", config.get("backend")),
            ("isolation requested", config.get("isolation") or "default"),
            ("timeout", config.get("timeout") or "preset"),
            ("memory", config.get("memory") or "preset"),
            ("parameters", ", ".join(f"{k}={v}" for k, v in (config.get("params") or {}).items()) or "-"),
            (
                "sessions",
                ", ".join(
                    f"{str(s.get('session_id'))[:12]}… ({s.get('count')} records, head "
                    f"{str(s.get('head'))[:12]}…{', signed' if s.get('signature') else ''})"
                    for s in info.get("sessions") or []
                    if isinstance(s, Mapping)
                ),
            ),
            ("run completed", run.get("completed")),
            ("sealed by", sealed_by_note(info) if isinstance(info.get("seal"), Mapping) else "not sealed"),
            (
                "environment",
                ", ".join(f"{k} {v}" for k, v in env.items())
                or "not recorded by the run (an attestation shows the attester's own as attester_environment)",
            ),
        ):
            rows.append(f"<dt>{html.escape(label)}</dt><dd>{html.escape(str(value))}</dd>")
        parts.append("<h2 style='font-size:15px'>Run</h2><dl>" + "".join(rows) + "</dl>")
    parts.append("</div><hr>")
    return "".join(parts)


CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'self'; base-uri 'none'; form-action 'none'"
"""The report's Content-Security-Policy: no script, no fetch, no form, in the verdict's document and the frame."""

_NOTEBOOK_CSS = """
body { font-family: system-ui, sans-serif; font-size: 13px; margin: 8px; }
.cell { margin: 6px 0; } .prompt { color: #777; font-family: monospace; font-size: 11px; }
pre { white-space: pre-wrap; margin: 0; } .input_area { background: #f7f7f7; padding: 4px; }
.output_area { padding: 2px 4px; } .output_stderr { background: #fdd; } img { max-width: 100%; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 2px 4px; }
"""


def sanitize(markup: str) -> str:
    """``markup`` with everything that could run or fetch removed: the one allowlist (nh3) for sandbox
    markup, :func:`glsandbox_kernel.active_content.clean_html`, that the live outputs pass through too."""
    from ..active_content import clean_html

    return clean_html(markup)


def notebook_html(nb: Any, title: str) -> str:
    """The notebook as a sanitized, script-free HTML document (the frame's ``srcdoc``)."""
    from nbconvert import HTMLExporter
    from nbformat import from_dict
    from pygments.formatters import HtmlFormatter

    from .checks import cell_outputs
    from .evidence import streams_as_shown
    from .seal import cell_source

    nb = from_dict(copy.deepcopy(dict(nb)))
    nb["cells"] = [cell for cell in nb.get("cells") or [] if isinstance(cell, Mapping)]  # damage: verify names it
    for cell in nb["cells"]:
        cell["source"] = cell_source(cell)
        if cell.get("cell_type") == "code":
            cell["outputs"] = from_dict(streams_as_shown(cell_outputs(cell))[0])  # what the record covers
    try:
        body, _resources = HTMLExporter(template_name="basic").from_notebook_node(
            nb, resources={"metadata": {"name": title}}
        )
    except Exception as exc:  # noqa: BLE001 - nbconvert refuses a damaged notebook in many ways
        body = f"<p>The notebook cannot be rendered ({html.escape(type(exc).__name__)}): it is damaged.</p>"
    css = _NOTEBOOK_CSS + HtmlFormatter().get_style_defs(".highlight")
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP)}">'
        f"<style>{css}</style></head><body>{sanitize(body)}</body></html>"
    )


def build_report(
    nb: Any, key: Any = None, *, title: str = "notebook", strict: bool = False
) -> tuple[str, NotebookVerifyResult]:
    """``(html, verification)``: both verdicts and the table, then the sanitized notebook in a sandboxed frame.

    The page always shows the plain and the strict verdict; ``strict`` picks which one is returned.
    """
    result = verify_notebook(nb, key)
    strict_result = verify_notebook(nb, key, strict=True)
    block = summary_html(nb, result, title=title, strict=strict_result)
    frame = notebook_html(nb, title)
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP)}">'
        f"<title>glsandbox evidence report: {html.escape(title)}</title></head><body>"
        f"{block}"
        '<iframe id="glsandbox-notebook" title="the notebook (sanitized, no scripts)" sandbox="" '
        'referrerpolicy="no-referrer" style="width: 100%; height: 85vh; border: 1px solid #ccc; resize: vertical;" '
        f'srcdoc="{html.escape(frame, quote=True)}"></iframe></body></html>'
    )
    return page, strict_result if strict else result


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``glsandbox report`` (called by :func:`glsandbox_kernel.cli.build_parser`)."""
    p = add_notebook_command(
        subparsers,
        "report",
        report_cli,
        help="write an HTML evidence report of an executed notebook",
        description="Render NOTEBOOK as HTML with its verification result and a per-cell table of controls, "
        "metrics, violations and hash checks.",
        output_help="default: NOTEBOOK with .evidence.html",
        output_metavar="HTML",
    )
    p.add_argument("--key", metavar="FILE", help="HMAC key file to check signatures (default: $GLSANDBOX_AUDIT_KEY)")
    p.add_argument("--pubkey", metavar="PUBLIC", help="Ed25519 public key file to check signatures")
    p.add_argument("--strict", action="store_true", help="exit 1 when the strict verdict fails (the page shows both)")
    return p


def report_cli(args: argparse.Namespace) -> int:
    """``glsandbox report``: 0 written and verified, 1 written but verification failed, 2 errors."""
    import os

    from ..audit.cli import load_verifier
    from .reading import read_notebook

    try:
        key = load_verifier(args)
    except (OSError, ValueError) as exc:
        print(f"glsandbox report: error: cannot use key {args.pubkey or args.key}: {exc}", file=sys.stderr)
        return 2
    try:  # verify's own reader: the page's verdict is that of audit verify (BOM, duplicate keys)
        nb = read_notebook(args.notebook)
    except OSError as exc:
        print(f"glsandbox report: error: cannot read {args.notebook}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(
            printable(f"glsandbox report: error: {args.notebook} is not a notebook: {exc}", one_line=True),
            file=sys.stderr,
        )
        return 2
    out = args.output or beside_notebook(args.notebook, ".evidence.html")
    markup, result = build_report(nb, key, title=os.path.basename(args.notebook), strict=args.strict)
    replace_file(out, markup)
    print(f"glsandbox report: wrote {out}")
    print(f"audit{' --strict' if args.strict else ''}: {result.summary()}")
    for problem in result.problems[:20]:  # they quote the notebook's own text: escaped
        print(f"  {printable(problem, one_line=True)}")
    return 0 if result.ok else 1


__all__ = ["add_report_parser", "build_report", "report_cli", "summary_html"]
