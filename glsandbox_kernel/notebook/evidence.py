"""Per-cell audit evidence in notebooks: canonical outputs, hashes, the audit output (host side).

Who calls: :meth:`glsandbox_kernel.sandbox.OSSandbox.run_cell` (hashes every
output of a cell into its sealed audit record), the kernel (emits
:func:`audit_bundle` as the cell's last output), and the verifier, ``glsandbox
run``, the report and the pre-save hook (recompute the same hashes from a
saved notebook). Nothing here runs in the sandbox, and this module imports no
Jupyter package, so the engine can use it on its hot path.

**What a cell record covers** (``extra.outputs``): every output of the cell
as the frontend saves it, in order, except the audit output itself, which is
derived from the record (:func:`audit_bundle`) and re-derived by the verifier.
Each entry is ``{"origin": "sandbox" | "kernel", "hash": ...}``: the origin
is decided on the host by the path the output took (the worker's frames, or
the kernel's own monitor, banner and notices through
``OSSandbox.mark_output``), never by anything an output carries, so sandboxed
code cannot make its outputs look kernel-made, and no output is skipped.

The hashed form of an output (:func:`canonical_outputs`) is the same for the
outputs collected live and for the outputs a frontend saves (nbclient,
JupyterLab):

- stream outputs: list-of-lines text joined, consecutive streams of the same
  name merged, then carriage returns and backspaces applied the way
  JupyterLab's output model applies them;
- display_data / execute_result: ``output_type``, ``data`` (text MIME types
  joined, base64 payloads without whitespace, JSON MIME types as JSON) and
  ``metadata``;
- error: ename, evalue, traceback;
- everything through RFC 8785 JCS (:mod:`glsandbox_kernel.audit.canonical`).

:data:`VOLATILE_FIELDS` lists what is not covered; every entry is a field
the frontend or the Jupyter server writes, none is a field of an output.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..audit.records import canonical_json
from ..units import fmt_bytes as _fmt_bytes
from .held_records import number_or_none
from .stream_text import process_stream_text

AUDIT_MIME = "application/vnd.glsandbox.audit+json"
"""MIME type of the per-cell audit output (the record and the records before it)."""

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
"""MIME type of a live ipywidgets view (covered like any output)."""

ROLE_MONITOR = "monitor"
ROLE_AUDIT = "audit"
ROLE_NOTICE = "notice"
#: ``metadata.glsandbox.role`` values the kernel puts on its own outputs (for display only: no
#: hash depends on them; the record says which outputs the kernel made).
KERNEL_ROLES = frozenset({ROLE_MONITOR, ROLE_AUDIT, ROLE_NOTICE})

ORIGIN_SANDBOX = "sandbox"
ORIGIN_KERNEL = "kernel"

#: at most this many per-output entries go into a record (beyond it, only the overall hash).
MAX_OUTPUT_HASHES = 4096

#: The one list of fields no hash or signature covers (written by frontends and the server).
VOLATILE_FIELDS: dict[str, str] = {
    "notebook.metadata.widgets": (
        "ipywidgets state saved by the frontend: the views are covered outputs, the state they render is "
        "not (verify warns when it is there; --strict fails)"
    ),
    "notebook.metadata (other keys)": "frontend and tool settings; kernelspec, language_info and glsandbox ARE covered",
    "notebook.nbformat_minor, cell.id": "notebook format upgrades by the frontend (4.4 to 4.5 adds cell ids)",
    # cell.metadata.glsandbox is checked: its records against the audit output, its summary re-derived
    "cell.metadata (except glsandbox)": "execution timing (cell.metadata.execution), collapsed, scrolled, trusted, tags",
    "cell.execution_count, execute_result.execution_count": "prompt numbers; the order of execution is the records' "
    "seq (verify warns when one disagrees with the audit line, its cell or the order; --strict fails)",
    "output transient": "display ids; never saved",
}

_OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")
_WS = re.compile(r"\s+")  # outputs format 1 (Unicode whitespace too: review 11 finding 3)
_ASCII_WS = re.compile(r"[ \t\n\r\f]+")  # outputs format 2: only what base64 decoders skip
#: how a cell's outputs are hashed (``extra.outputs_format`` of its record; absent: 1). 2: base64
#: payloads lose only ASCII whitespace, integers beyond 2**53 in JSON data are hashed exactly.
OUTPUTS_FORMAT = 2
_BIG = 2**53


def role_metadata(role: str, **extra: Any) -> dict[str, Any]:
    """Output metadata naming a kernel-made output's role (display only; hashed like any metadata)."""
    return {"glsandbox": {"role": role, **extra}}


def output_role(output: Mapping[str, Any]) -> str | None:
    """The ``metadata.glsandbox.role`` of an output, or None (a claim, not proof of origin)."""
    meta = output.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    marker = meta.get("glsandbox")
    if isinstance(marker, Mapping):
        role = marker.get("role")
        return str(role) if role is not None else None
    return None


def is_audit_output(output: Mapping[str, Any]) -> bool:
    """An output holding an audit record (the kernel's, or one claiming to be)."""
    data = output.get("data")
    return isinstance(data, Mapping) and isinstance(data.get(AUDIT_MIME), Mapping)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "".join(str(x) for x in value)
    return "" if value is None else str(value)


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def _is_text_mime(mime: str) -> bool:
    return mime.startswith("text/") or mime.endswith("+xml") or mime in ("application/javascript",)


def _json_safe(value: Any, depth: int = 0, fmt: int = 1) -> Any:
    """Hostile output data as the JSON a frontend saves: NaN/inf as null, keys as strings, no odd types.

    ``fmt`` 2: an int beyond 2**53 (which RFC 8785 would hash as the nearest double) becomes the
    string ``"\\0int:<digits>"``, and a string value starting with NUL gets one more NUL (so no
    string can pose as such an int).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return f"\0int:{value}" if fmt >= 2 and abs(value) > _BIG else value
    if isinstance(value, str):
        return "\0" + value if fmt >= 2 and value.startswith("\0") else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth > 100:
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, depth + 1, fmt) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1, fmt) for v in value]
    return str(value)


def _canonical_data(data: Any, fmt: int = 1) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(data, Mapping):
        return out
    for mime, value in data.items():
        mime = str(mime)
        if _is_json_mime(mime):
            out[mime] = _json_safe(value, 0, fmt)
        elif _is_text_mime(mime):
            out[mime] = _text(value)
        else:  # base64 payloads (images, PDF): frontends may re-wrap the lines
            out[mime] = (_ASCII_WS if fmt >= 2 else _WS).sub("", _text(value))
    return out


def _canonical(outputs: Iterable[Mapping[str, Any]], fmt: int = OUTPUTS_FORMAT) -> list[tuple[dict[str, Any], str]]:
    """``(canonical output, origin)`` pairs; origin from the host-only ``_mark`` of collected outputs."""
    result: list[tuple[dict[str, Any], str]] = []
    last_stream: dict[str, Any] | None = None
    for output in outputs:
        if not isinstance(output, Mapping):
            continue
        origin = ORIGIN_KERNEL if output.get("_mark") is True else ORIGIN_SANDBOX
        kind = output.get("output_type")
        if kind == "stream":
            name = "stderr" if output.get("name") == "stderr" else "stdout"
            text = _text(output.get("text"))
            if last_stream is not None and last_stream["name"] == name:  # merged as every frontend does
                last_stream["text"] += text
            else:
                last_stream = {"output_type": "stream", "name": name, "text": text}
                result.append((last_stream, origin))
            continue
        last_stream = None
        if kind == "error":
            tb = output.get("traceback")
            item: dict[str, Any] = {
                "output_type": "error",
                "ename": _text(output.get("ename")),
                "evalue": _text(output.get("evalue")),
                "traceback": [str(x) for x in tb] if isinstance(tb, (list, tuple)) else [],
            }
        elif kind in ("display_data", "execute_result"):
            meta = output.get("metadata")
            item = {
                "output_type": kind,
                "data": _canonical_data(output.get("data"), fmt),
                "metadata": _json_safe(meta, 0, fmt) if isinstance(meta, Mapping) else {},
            }
        else:
            item = {"output_type": str(kind)}
        result.append((item, origin))
    for item, _origin in result:
        if item["output_type"] == "stream":
            item["text"] = process_stream_text(item["text"])
    return [(item, o) for item, o in result if item["output_type"] != "stream" or item["text"]]


def streams_as_shown(outputs: Iterable[Mapping[str, Any]]) -> tuple[list[Any], bool]:
    """``(outputs with every stream's text as a terminal shows it, whether any text changed)``.

    The hash covers stream text after ``\\r``/``\\b`` are applied (JupyterLab
    saves that form). A viewer that shows raw text (nbviewer, GitHub, an
    editor) would also show text hidden behind them, which no record covers:
    the verifier names such cells, the evidence report renders this form.
    """
    shown: list[Any] = []
    changed = False
    for output in outputs:
        if isinstance(output, Mapping) and output.get("output_type") == "stream":
            raw = _text(output.get("text"))
            done = process_stream_text(raw)
            if done != raw:
                changed = changed or done != raw.replace("\r\n", "\n")  # a CRLF line end hides nothing
                output = {**output, "text": done}
        shown.append(output)
    return shown, changed


def canonical_outputs(outputs: Iterable[Mapping[str, Any]], fmt: int = OUTPUTS_FORMAT) -> list[dict[str, Any]]:
    """The stable form of a cell's outputs that is hashed (see the module docstring).

    Accepts the session's collected outputs and nbformat outputs (plain dicts
    or ``NotebookNode``). Called host side by ``run_cell`` and the verifier.
    ``fmt``: the outputs format (:data:`OUTPUTS_FORMAT`; 1 for older records and seals).
    """
    return [item for item, _origin in _canonical(outputs, fmt)]


def _digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def output_entries(outputs: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """``[{"origin", "hash"}]`` per canonical output, in order (``extra.outputs`` of a cell record)."""
    return [{"origin": origin, "hash": _digest(item)} for item, origin in _canonical(outputs)]


def entries_hash(entries: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 hex over the ordered output entries (``extra.outputs_hash``)."""
    return _digest([[str(e.get("origin")), str(e.get("hash"))] for e in entries])


def output_hashes(outputs: Iterable[Mapping[str, Any]], fmt: int = OUTPUTS_FORMAT) -> list[str]:
    """SHA-256 hex of each canonical output, in order (origin not included)."""
    return [_digest(item) for item, _origin in _canonical(outputs, fmt)]


def outputs_format(extra: Mapping[str, Any]) -> int:
    """The outputs format a cell record's ``extra`` was hashed with (1 before ``outputs_format``)."""
    fmt = extra.get("outputs_format")
    return fmt if isinstance(fmt, int) and not isinstance(fmt, bool) and 1 <= fmt <= OUTPUTS_FORMAT else 1


def outputs_evidence(outputs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``extra`` fields ``run_cell`` seals into a cell record: every output's origin and hash."""
    entries = output_entries(outputs)
    evidence: dict[str, Any] = {"outputs_hash": entries_hash(entries), "outputs_count": len(entries)}
    evidence["outputs_format"] = OUTPUTS_FORMAT
    if len(entries) <= MAX_OUTPUT_HASHES:
        evidence["outputs"] = entries
    return evidence


def saved_outputs_evidence(
    outputs: Iterable[Mapping[str, Any]], origins: list[str] | None, fmt: int = OUTPUTS_FORMAT
) -> dict[str, Any]:
    """The same from a saved cell, whose outputs carry no origin: ``origins`` come from the record."""
    canonical = canonical_outputs(outputs, fmt)
    hashes = [_digest(item) for item in canonical]
    if origins is None or len(origins) != len(hashes):
        origins = [ORIGIN_SANDBOX] * len(hashes)
    entries = [{"origin": o, "hash": h} for o, h in zip(origins, hashes, strict=True)]
    return {"outputs_hash": entries_hash(entries), "outputs_count": len(entries), "outputs": entries}


#: how much of a silent run's code its record keeps (the rest: only its hash)
SILENT_CODE_CHARS = 4096


def cell_binding(parent: Any, silent: bool, code: str = "") -> dict[str, Any]:
    """The ``extra`` fields that tie a cell record to where it is shown (host side: kernel and magic).

    ``silent``: no audit output shows it (a silent execute_request): the next cell's audit output
    holds it in ``preceding``, the only place a cell record may stand there. ``cell_id``: the
    frontend's ``cellId`` (JupyterLab, nbclient), which ``superseded`` records must share with
    the record of the cell that holds them (None: the frontend named no cell). A silent run's
    ``code`` is kept (``silent_code``, at most :data:`SILENT_CODE_CHARS` characters;
    ``silent_code_complete``: all of it, as hashed), so that verify can name what ran unseen.
    """
    meta = parent.get("metadata") if isinstance(parent, Mapping) else None
    cell_id = meta.get("cellId") if isinstance(meta, Mapping) else None
    if isinstance(cell_id, str) and len(cell_id) > 128:
        cell_id = "sha256:" + hashlib.sha256(cell_id.encode("utf-8", "surrogatepass")).hexdigest()
    binding = {"silent": bool(silent), "cell_id": cell_id if isinstance(cell_id, str) else None}
    if silent:
        kept = code[:SILENT_CODE_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
        binding.update(silent_code=kept, silent_code_complete=kept == code)
    return binding


def source_hash(source: str | Iterable[str]) -> str:
    """SHA-256 hex of a cell's source (``extra.source_hash`` of its record)."""
    text = source if isinstance(source, str) else "".join(source)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- the audit output ---------------------------------------------------------------------------


def fmt_bytes(n: int | float | None) -> str:
    """``41 MiB``-style size, ``?`` when unknown (the compact form of :func:`..units.fmt_bytes`)."""
    return _fmt_bytes(n, compact=True)


def fmt_seconds(s: float | None) -> str:
    """``0.12 s`` / ``3.4 s`` / ``2 min 05 s``; ``?`` when unknown."""
    if s is None:
        return "?"
    if s < 10:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s"


def record_status(record: Mapping[str, Any]) -> str:
    """``ok``, ``error``, ``timeout``, ``violation`` ... from a cell record's event type."""
    event = str(record.get("event_type") or "")
    return {
        "execution_success": "ok",
        "execution_error": "error",
        "memory_exceeded": "memory exceeded",
        "escape_attempt": "escape attempt",
        "worker_crashed": "crashed",
    }.get(event, event or "?")


def record_figures(record: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[Any], float | None, float | None]:
    """``(metrics, violations, wall seconds, CPU seconds)`` of an audit record, each of the
    expected type or empty/None (the record may come from a file anyone could edit)."""
    metrics = record.get("metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}
    violations = record.get("violations")
    violations = violations if isinstance(violations, list) else []
    wall = record.get("execution_time")
    cpu = metrics.get("cpu_time_used")
    return metrics, violations, number_or_none(wall), number_or_none(cpu)


def summary_line(record: Mapping[str, Any], execution_count: int | None = None) -> str:
    """The one-line text of a cell's audit output."""
    metrics, violations, wall, cpu = record_figures(record)
    parts = [
        f"cell {execution_count}" if execution_count is not None else "cell",
        f"{record.get('security_level', '?')}/{record.get('isolation_type', '?')}",
        record_status(record),
        fmt_seconds(wall),
        f"CPU {fmt_seconds(cpu)}",
        f"peak {fmt_bytes(number_or_none(metrics.get('memory_peak_bytes')))}",
        f"{len(violations)} violation{'s' if len(violations) != 1 else ''}",
        f"record {str(record.get('record_hash', ''))[:8]}…",
    ]
    return "glsandbox audit: " + " · ".join(parts)


def audit_bundle(
    record: Mapping[str, Any],
    preceding: Iterable[Mapping[str, Any]] = (),
    *,
    execution_count: int | None = None,
    superseded: Iterable[Mapping[str, Any]] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, metadata)`` of the display_data the kernel emits as a cell's last output.

    ``preceding`` are the records sealed since the previous cell's audit
    output (session start, fallback, silent cells ...), so that the notebook
    holds the whole chain. Called by the kernel after ``run_cell`` (host side).
    """
    import html

    line = summary_line(record, execution_count)
    payload: dict[str, Any] = {"record": dict(record), "preceding": [dict(r) for r in preceding]}
    earlier = [dict(r) for r in superseded]
    if earlier:
        payload["superseded"] = earlier
    data = {
        AUDIT_MIME: payload,
        "text/plain": line,
        "text/html": (
            '<div class="glsandbox-audit" style="font-family: monospace; font-size: 11px; color: #777;">'
            f"{html.escape(line)}</div>"
        ),
    }
    return data, role_metadata(ROLE_AUDIT)


class AuditTrail:
    """Which records of a sandbox session were already shown in a cell (kernel or magic side).

    :meth:`bundle` gives the audit output of a cell's record with every
    record sealed since the previous bundle as ``preceding``, so the cells of
    a notebook hold the whole chain between them. When the frontend names the
    cell (JupyterLab sends ``cellId`` in the execute_request metadata), a
    re-executed cell's new audit output also carries the records its previous
    audit output held (``superseded``): the frontend replaces that output, and
    the chain stays whole.
    """

    def __init__(self) -> None:
        self._shown: dict[str, int] = {}
        self._cells: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def bundle(
        self,
        sandbox: Any,
        record: Mapping[str, Any],
        *,
        execution_count: int | None = None,
        cell_id: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(data, metadata)`` for ``record`` (a record of ``sandbox.audit_records``)."""
        records = sandbox.audit_records
        session = str(record.get("session_id"))
        target = record.get("record_hash")
        index = next((i for i in range(len(records) - 1, -1, -1) if records[i].get("record_hash") == target), None)
        start = self._shown.get(session, 0)
        if index is None:
            preceding: list[dict[str, Any]] = []
        else:
            preceding = records[min(start, index) : index]
            self._shown[session] = index + 1
        superseded: list[dict[str, Any]] = []
        if isinstance(cell_id, str) and cell_id:
            key = (session, cell_id)
            superseded = self._cells.get(key, [])
            self._cells[key] = [*superseded, *(dict(r) for r in preceding), dict(record)]
        return audit_bundle(record, preceding, execution_count=execution_count, superseded=superseded)


def find_audit_output(outputs: Iterable[Mapping[str, Any]]) -> tuple[int, dict[str, Any]] | None:
    """``(index, payload)`` of the cell's audit output (the last output holding a record), or None.

    The kernel emits it as the cell's last output; in an IPython kernel the
    ``%%sandbox`` cell's result or exception follows it. Any other
    audit-looking output is an ordinary output, which the record must list.
    """
    found: tuple[int, dict[str, Any]] | None = None
    for index, output in enumerate(outputs):
        if isinstance(output, Mapping) and is_audit_output(output):
            found = (index, dict(output["data"][AUDIT_MIME]))
    return found


__all__ = [
    "AUDIT_MIME",
    "KERNEL_ROLES",
    "VOLATILE_FIELDS",
    "WIDGET_MIME",
    "audit_bundle",
    "canonical_outputs",
    "cell_binding",
    "entries_hash",
    "find_audit_output",
    "output_entries",
    "output_hashes",
    "output_role",
    "outputs_evidence",
    "outputs_format",
    "process_stream_text",
    "role_metadata",
    "source_hash",
    "streams_as_shown",
    "summary_line",
]
