"""Text and HTML of the cell monitor: live labels, the frozen summary, the violation banner (host side).

Who calls: :class:`~glsandbox_kernel.widgets.monitor.CellMonitor` (kernel
process) for what it displays; pure functions of the monitor's samples, the
session's final metrics and the supervisor's violation records, every string
from them HTML-escaped before it reaches the frontend.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..notebook.evidence import fmt_bytes, fmt_seconds
from .chart import Point


def limits_of(sandbox: Any) -> dict[str, Any]:
    """The limits in force for the session (shown next to the live figures)."""
    config = getattr(sandbox, "config", None)
    limits = getattr(config, "limits", None)
    return {
        "memory": getattr(limits, "memory_limit_bytes", None),
        "cpu_time": getattr(limits, "cpu_time_limit_seconds", None),
        "pids": getattr(limits, "max_processes", None),
        "timeout": getattr(config, "execution_timeout", None),
        "level": str(getattr(getattr(config, "security_level", None), "value", "") or ""),
        "backend": str(getattr(sandbox, "isolation_type", "") or ""),
    }


def labels_html(points: list[Point], event: Mapping[str, Any], limits: Mapping[str, Any], *, running: bool) -> str:
    """The live labels: elapsed, CPU, memory (current, peak, limit), pids, limits."""
    elapsed = num(event.get("elapsed")) or 0.0
    cpu_time = num(event.get("cpu_time"))
    mem = int_or_none(event.get("memory_current"))
    peak = int_or_none(event.get("memory_peak"))
    pids = int_or_none(event.get("pids"))
    cpu_pct = points[-1].cpu_percent if points else None
    state = "running" if running else "finished"
    lim = []
    if limits.get("timeout"):
        lim.append(f"timeout {fmt_seconds(limits['timeout'])}")
    if limits.get("cpu_time"):
        lim.append(f"CPU {fmt_seconds(limits['cpu_time'])}")
    if limits.get("pids"):
        lim.append(f"{limits['pids']} pids")
    where = " · ".join(x for x in (limits.get("level"), limits.get("backend")) if x)
    rows = [
        f'<b class="glsandbox-elapsed" data-seconds="{elapsed:.2f}">{fmt_seconds(elapsed)}</b> {state}'
        + (f" <span style='color:#888'>({html.escape(where)})</span>" if where else ""),
        f'CPU <b class="glsandbox-cpu">{"?" if cpu_pct is None else f"{cpu_pct:.0f}%"}</b>'
        + (f" · {fmt_seconds(cpu_time)} used" if cpu_time is not None else ""),
        f'memory <b class="glsandbox-mem" data-bytes="{mem if mem is not None else ""}">{fmt_bytes(mem)}</b>'
        f' · peak <b class="glsandbox-peak" data-bytes="{peak if peak is not None else ""}">{fmt_bytes(peak)}</b>'
        + (f" / limit {fmt_bytes(limits['memory'])}" if limits.get("memory") else ""),
        f"pids <b>{pids if pids is not None else '?'}</b>" + (f" · limits: {', '.join(lim)}" if lim else ""),
    ]
    return (
        '<div class="glsandbox-monitor" style="font-family: var(--jp-code-font-family, monospace); '
        'font-size: 12px; line-height: 1.6; padding-left: 8px;">' + "<br>".join(rows) + "</div>"
    )


def summary_text(
    metrics: Any, limits: Mapping[str, Any], *, status: str, violations: int, elapsed: float | None
) -> str:
    """The frozen summary line: wall time, CPU time, peak memory, violations, status."""
    cpu = num(getattr(metrics, "cpu_time_used", None))
    peak = int_or_none(getattr(metrics, "memory_peak_bytes", None))
    parts = [
        f"wall {fmt_seconds(elapsed)}",
        f"CPU {fmt_seconds(cpu)}",
        f"peak memory {fmt_bytes(peak)}" + (f" of {fmt_bytes(limits['memory'])}" if limits.get("memory") else ""),
        f"{violations} violation{'s' if violations != 1 else ''}",
        status,
    ]
    return "glsandbox monitor: " + " · ".join(parts)


def summary_html(text: str, png: bytes | None) -> str:
    """The frozen summary as HTML: the line, and the chart as an inline PNG."""
    img = ""
    if png:
        b64 = base64.b64encode(png).decode("ascii")
        img = f'<br><img class="glsandbox-chart" alt="CPU and memory over time" src="data:image/png;base64,{b64}">'
    return (
        '<div class="glsandbox-summary" style="font-family: var(--jp-code-font-family, monospace); '
        f'font-size: 12px; color: #555;">{html.escape(text)}{img}</div>'
    )


def describe_violation(v: Mapping[str, Any]) -> str:
    """``ptrace(PTRACE_ATTACH, 1) — trusted — denied`` style line for one violation."""
    what = v.get("detail") or v.get("syscall") or v.get("path") or v.get("host") or v.get("kind") or "?"
    trusted = "trusted (measured outside)" if v.get("trusted") else "reported by the sandbox (untrusted)"
    action = v.get("action") or "recorded"
    kind = v.get("kind") or "violation"
    escape = " · escape attempt" if v.get("escape") else ""
    return f"{kind}: {what} — {trusted} — {action}{escape}"


def banner(violations: Sequence[Mapping[str, Any]], *, mode: str, status: str | None) -> tuple[str, str]:
    """``(text, html)`` of the red violation banner."""
    n = len(violations)
    head = f"glsandbox: {n} violation{'s' if n != 1 else ''} detected"
    if status == "stopped":
        tail = "the cell was stopped (enforcing mode)"
    elif status == "killed":
        tail = "the cell did not stop when told to, so the worker was killed and its state is lost (enforcing mode)"
    elif status == "continued":
        tail = "the cell continued (permissive mode: the operations were still denied)"
    else:
        tail = (
            "the cell will be stopped (enforcing mode)"
            if mode != "permissive"
            else "the cell continues (permissive mode: the operations are still denied)"
        )
    lines = [describe_violation(v) for v in violations[:50]]
    if n > 50:
        lines.append(f"… and {n - 50} more")
    text = "\n".join([head, *(f"  • {x}" for x in lines), tail])
    items = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    markup = (
        '<div class="glsandbox-violations" style="background:#fdecea; border-left: 4px solid #d32f2f; '
        'color:#611a15; padding: 6px 10px; font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px;">'
        f"<b>⚠ {html.escape(head)}</b><ul style='margin: 4px 0 4px 18px; padding: 0;'>{items}</ul>"
        f'<b class="glsandbox-violation-status">{html.escape(tail)}</b></div>'
    )
    return text, markup


def num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)
