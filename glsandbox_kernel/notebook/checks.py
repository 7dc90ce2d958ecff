"""Per-cell and per-session checks of notebook evidence (host side).

Who calls: :func:`glsandbox_kernel.notebook.verify.verify_notebook`, which
walks the cells and hands each cell's findings and each session's records
to these helpers. Nothing here runs code from the notebook.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..audit.records import GENESIS_HASH, EventType
from .evidence import AUDIT_MIME, audit_bundle, output_hashes
from .held_records import held_records as held_records  # verify's per-cell checks of held records
from .shape import as_list, shape_problems


@dataclasses.dataclass
class CellCheck:
    """The verification of one code cell (rows of the report's table)."""

    index: int
    execution_count: int | None
    record: dict[str, Any] | None = None
    where: str = "none"  # "output", "metadata" or "none"
    source_ok: bool | None = None
    outputs_ok: bool | None = None
    chain_ok: bool | None = None
    signature_ok: bool | None = None
    executed: bool = True
    outside: bool = False  # an ordinary cell of a non-glsandbox notebook (not a %%sandbox cell)
    superseded: int = 0  # records of earlier runs of this cell (re-executed)
    out_of_order: bool = False  # its record is older than that of a cell above it
    hidden_text: bool = False  # stream text that \r/\b hide from the hashed (shown) form
    renumbered: bool = False  # its prompt number is not the one its audit line was made with
    problems: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        """``cell 3 (In [2])`` — index as shown by Jupyter (1-based) plus execution count."""
        count = f"In [{self.execution_count}]" if self.execution_count is not None else "not executed"
        return f"cell {self.index + 1} ({count})"

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclasses.dataclass
class _Entry:
    record: dict[str, Any]
    cell: CellCheck
    own: bool  # the cell's own record (not one of its preceding records)
    superseded: bool = False  # a record of an earlier run of this cell (re-executed)


def _describe_outputs(current: list[str], recorded: list[str]) -> str:
    """Which outputs changed, from per-output hashes (1-based positions)."""
    if len(current) < len(recorded) and _is_subsequence(current, recorded):
        missing = _missing_positions(current, recorded)
        return f"output{'s' if len(missing) > 1 else ''} {_positions(missing)} removed"
    if len(current) > len(recorded) and _is_subsequence(recorded, current):
        added = _missing_positions(recorded, current)
        return f"output{'s' if len(added) > 1 else ''} {_positions(added)} added"
    if len(current) == len(recorded):
        changed = [i + 1 for i, (a, b) in enumerate(zip(current, recorded, strict=True)) if a != b]
        return f"output{'s' if len(changed) > 1 else ''} {_positions(changed)} edited"
    return f"outputs edited ({len(current)} now, {len(recorded)} when it ran)"


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(any(x == y for y in it) for x in short)


def _missing_positions(short: list[str], long: list[str]) -> list[int]:
    out, j = [], 0
    for i, item in enumerate(long):
        if j < len(short) and short[j] == item:
            j += 1
        else:
            out.append(i + 1)
    return out


def _positions(items: list[int]) -> str:
    return ", ".join(str(i) for i in items) if items else "?"


def _magic_order_ok(outputs: Sequence[Any], found_at: int, rec_entries: list[Any], fmt: int = 1) -> bool:
    """A ``%%sandbox`` cell: IPython shows the cell's result or exception after the audit output.

    The outputs before the audit output must be the recorded ones in order,
    once those shown after it (each one recorded) are taken out.
    """
    recorded = [str(e.get("hash")) for e in rec_entries if isinstance(e, Mapping)]
    before = output_hashes(outputs[:found_at], fmt)
    for h in output_hashes(outputs[found_at + 1 :], fmt):
        if h not in recorded:
            return False
        recorded.remove(h)
    return recorded == before


_SHOWN_COUNT = re.compile(r"glsandbox audit: cell (\d+) ·")


def _check_audit_output(check: CellCheck, output: Mapping[str, Any], payload: Mapping[str, Any], record: Any) -> None:
    """The visible audit output must be exactly what the kernel derives from the record.

    The line shows the prompt number the cell had when it ran (``cell 3``), which no hash
    covers: a line that matches for the number it shows, under another prompt number now,
    is a renumbered prompt (a warning), not a rewritten line.
    """
    preceding = [dict(r) for r in as_list(payload.get("preceding")) if isinstance(r, Mapping)]
    extra_keys = {k: v for k, v in payload.items() if k not in ("record", "preceding")}
    data = output.get("data") if isinstance(output.get("data"), Mapping) else {}
    assert isinstance(data, Mapping)
    line = data.get("text/plain")
    line = "".join(line) if isinstance(line, list) else str(line)
    shown = _SHOWN_COUNT.match(line)
    shown_count = int(shown.group(1)) if shown and len(shown.group(1)) < 20 else None
    got = {k: ("".join(v) if isinstance(v, list) else v) for k, v in data.items() if k != AUDIT_MIME}
    for count in dict.fromkeys((check.execution_count, None, shown_count)):
        want_data, want_meta = audit_bundle(record, preceding, execution_count=count, **extra_keys)
        if got == {k: v for k, v in want_data.items() if k != AUDIT_MIME} and output.get("metadata") == want_meta:
            if count is not None and count != check.execution_count:
                check.renumbered = True
                now = f"In [{check.execution_count}]" if check.execution_count is not None else "no prompt number"
                check.warnings.append(
                    f"{check.label}: its prompt number ({now}) is not the one it ran with (its audit line shows "
                    f"cell {count}): the execution count was changed after it ran (prompt numbers are not "
                    "covered; the records' seq gives the order of execution)"
                )
            return
    count = shown_count if shown_count is not None else check.execution_count
    want = audit_bundle(record, preceding, execution_count=count, **extra_keys)[0]["text/plain"]
    check.problems.append(
        f"{check.label}: its visible audit line was rewritten: it shows {line[:160]!r}, its record gives {want[:160]!r}"
    )


def copies_differ(meta: Mapping[str, Any], output: Mapping[str, Any]) -> list[str]:
    """Which record copies in a cell's metadata (``record``, ``preceding``, ``superseded``) are not,
    value for value and type for type, the audit output's: ``["record"]``; empty when they agree.

    Compared as canonical JSON (sorted keys), so ``true`` is not ``1`` and ``1.0`` is not ``1``;
    an absent ``preceding`` or ``superseded`` equals an empty one (how the copy is written).
    Who calls: ``verify_notebook`` (host side; both copies are the notebook's, untrusted).
    """

    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=True, separators=(",", ":"))

    return [
        name
        for name, empty in (("record", {}), ("preceding", []), ("superseded", []))
        if canonical(meta.get(name) or empty) != canonical(output.get(name) or empty)
    ]


def _check_chain(
    session_id: str,
    items: list[_Entry],
    listed: Mapping[str, Any] | None,
    problems: list[str],
) -> dict[str, Any]:
    """One session's chain: order in the notebook, seq gaps, prev_hash links, head."""
    short = session_id[:12] + "…"
    # Order in the notebook must follow the order of execution.
    own = [e for e in items if e.own]
    for a, b in itertools.pairwise(own):
        sa, sb = a.record.get("seq"), b.record.get("seq")
        if isinstance(sa, int) and isinstance(sb, int) and sb < sa and a.cell is not b.cell:
            b.cell.out_of_order = True
            b.cell.warnings.append(
                f"{b.cell.label}: ran before {a.cell.label} although it stands below it "
                "(executed out of order, or the cells were moved)"
            )
    ordered = sorted((e for e in items if isinstance(e.record.get("seq"), int)), key=lambda e: int(e.record["seq"]))
    prev: _Entry | None = None
    for entry in ordered:
        seq = int(entry.record["seq"])
        cell = entry.cell
        if prev is None:
            if seq != 0 and entry.record.get("event_type") == EventType.SESSION_START.value:
                # The session appended to a shared audit file (``--audit``): its chain goes on from that
                # file's head, so it starts at the file's seq. Nothing of this session comes before
                # its own signed session_start, so no cell of it can be missing here.
                pass
            elif seq != 0:
                cell.chain_ok = False
                cell.problems.append(
                    f"{cell.label}: {seq} record(s) of session {short} missing before it: the cells before it "
                    "were deleted or their audit outputs removed"
                )
            elif entry.record.get("prev_hash") != GENESIS_HASH:
                cell.chain_ok = False
                cell.problems.append(f"{cell.label}: the first record of session {short} does not start a chain")
        else:
            pseq = int(prev.record["seq"])
            if seq == pseq:
                if prev.record.get("record_hash") == entry.record.get("record_hash"):
                    cell.chain_ok = False
                    cell.problems.append(
                        f"{cell.label}: holds the same audit record as {prev.cell.label} (a copied or inserted cell)"
                    )
                else:
                    cell.chain_ok = False
                    cell.problems.append(
                        f"{cell.label}: its record claims seq {seq}, like a record of {prev.cell.label} "
                        "(an inserted or forged record)"
                    )
                continue
            if seq > pseq + 1:
                cell.chain_ok = False
                cell.problems.append(
                    f"{cell.label}: {seq - pseq - 1} record(s) missing between {prev.cell.label} and it: a cell was "
                    "deleted, its audit output removed, or a cell was re-run (its earlier record overwritten)"
                )
            elif entry.record.get("prev_hash") != prev.record.get("record_hash"):
                cell.chain_ok = False
                cell.problems.append(
                    f"{cell.label}: its record does not chain to the record before it ({prev.cell.label}): "
                    "a record was replaced, re-hashed or inserted"
                )
        if cell.chain_ok is None and entry.own:
            cell.chain_ok = True
        prev = entry
    head = prev.record.get("record_hash") if prev is not None else None
    count = int(prev.record["seq"]) + 1 if prev is not None else 0
    info: dict[str, Any] = {"session_id": session_id, "records": len(ordered), "head": head, "count": count}
    if listed is None:
        return info
    want_head = listed.get("head")
    want_count = listed.get("count")
    hashes = {e.record.get("record_hash") for e in items}
    if isinstance(want_count, int) and count < want_count:
        problems.append(
            f"session {short}: the notebook metadata says {want_count} record(s) but the cells hold only "
            f"{count}: the last cell(s) were deleted"
        )
    elif want_head is not None and want_head not in hashes:
        problems.append(
            f"session {short}: the chain head in the notebook metadata is not in any cell: the last cell(s) "
            "were deleted or the records replaced"
        )
    return info


WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"


def widget_state_warning(nb: Mapping[str, Any]) -> str | None:
    """What ``metadata.widgets`` changes of the shown outputs, or None when it holds no widget state.

    The widget views in outputs are covered; the state a frontend renders them
    with (``metadata.widgets``, saved by JupyterLab or written by anyone
    afterwards) is not: the sandbox never wrote it. Called by ``verify_notebook``
    (a warning; a problem under ``--strict``).
    """
    meta = nb.get("metadata")
    widgets = meta.get("widgets") if isinstance(meta, Mapping) else None
    bundle = widgets.get(WIDGET_STATE_MIME) if isinstance(widgets, Mapping) else None
    state = bundle.get("state") if isinstance(bundle, Mapping) else None
    if not widgets:
        return None
    shown: set[str] = set()
    for cell in nb.get("cells") or []:
        for output in (cell.get("outputs") or []) if isinstance(cell, Mapping) else []:
            data = output.get("data") if isinstance(output, Mapping) else None
            view = data.get("application/vnd.jupyter.widget-view+json") if isinstance(data, Mapping) else None
            if isinstance(view, Mapping) and isinstance(view.get("model_id"), str):
                shown.add(view["model_id"])
    models = set(state) if isinstance(state, Mapping) else set()
    decides = sorted(models & shown)
    return (
        f"notebook.metadata.widgets holds widget state ({len(models)} model(s)) that no record covers"
        + (
            f"; it decides what {len(decides)} covered widget view(s) show ({', '.join(decides[:3])[:120]})"
            if decides
            else ""
        )
        + ": renderers show that state, not what the sandbox sent"
    )


#: cell tags that nbconvert's TagRemovePreprocessor and Jupyter Book act on (they drop content from exports)
#: cell tags that make an export leave covered content out (nbconvert's TagRemovePreprocessor as
#: configured by Jupyter Book / MyST-NB: whole cell, input, outputs, or one stream)
REMOVING_TAGS = frozenset(
    f"remove{sep}{what}" for sep in "-_" for what in ("cell", "input", "output", "stderr", "stdout")
)
#: ``slideshow.slide_type`` values that ``nbconvert --to slides`` leaves out of the deck
REMOVING_SLIDE_TYPES = frozenset({"skip", "notes"})


def _removes(meta: Mapping[str, Any], tags: list[Any]) -> str | None:
    """Why an export drops covered content of a cell with metadata ``meta``, or None."""
    tag = next((t for t in tags if isinstance(t, str) and t in REMOVING_TAGS), None)
    if tag:
        return f"tag {tag}"
    transient, slideshow = meta.get("transient"), meta.get("slideshow")
    if isinstance(transient, Mapping) and transient.get("remove_source"):
        return "transient.remove_source"
    if isinstance(slideshow, Mapping) and slideshow.get("slide_type") in REMOVING_SLIDE_TYPES:
        return f"slideshow.slide_type {slideshow.get('slide_type')}"
    if meta.get("nbsphinx") == "hidden":
        return "nbsphinx hidden"
    mystnb = meta.get("mystnb")  # MyST-NB's cell-level configuration (Jupyter Book)
    if isinstance(mystnb, Mapping):
        key = next((k for k in ("remove_code_source", "remove_code_outputs") if mystnb.get(k)), None)
        if key:
            return f"mystnb.{key}"
        if str(mystnb.get("output_stderr", "")).startswith("remove"):
            return f"mystnb.output_stderr {mystnb.get('output_stderr')}"
    return None


def _hides(meta: Mapping[str, Any], tags: list[Any]) -> str | None:
    """Why a view folds covered content of a cell with metadata ``meta`` (it stays in the file), or None."""
    jupyter = meta.get("jupyter")
    if meta.get("collapsed") is True:
        return "collapsed"
    if isinstance(jupyter, Mapping) and (jupyter.get("outputs_hidden") or jupyter.get("source_hidden")):
        return "jupyter.outputs_hidden/source_hidden"
    if meta.get("hide_input") or meta.get("hide_output"):
        return "hide_input/hide_output"
    tag = next((t for t in tags if isinstance(t, str) and t.startswith(("hide-", "hide_"))), None)
    return f"tag {tag}" if tag else None


def hiding_metadata(nb: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(hide, remove)``: cells whose (uncovered) metadata hides covered content in a view, or drops it from exports.

    ``hide`` (a frontend or a book folds them): collapsed,
    ``jupyter.outputs_hidden``/``source_hidden``, ``hide_input``/``hide_output``
    (the hide-input extensions), ``hide-*``/``hide_*`` tags. ``remove`` (exports
    leave the content out): ``remove-*`` tags (cell, input, output, stderr,
    stdout), ``transient.remove_source``, ``slideshow.slide_type`` skip/notes
    (``nbconvert --to slides``), ``nbsphinx: hidden``. Each is ``"cell N (why)"``.
    Called by ``verify_notebook``: warnings; ``--strict`` fails on ``remove``.
    """
    hide: list[str] = []
    remove: list[str] = []
    for index, cell in enumerate(nb.get("cells") or []):
        meta = cell.get("metadata") if isinstance(cell, Mapping) else None
        if not isinstance(meta, Mapping):
            continue
        raw_tags = meta.get("tags")
        tags: list[Any] = raw_tags if isinstance(raw_tags, list) else []
        removes, hides = _removes(meta, tags), _hides(meta, tags)
        if removes:
            remove.append(f"cell {index + 1} ({removes})")
        elif hides:
            hide.append(f"cell {index + 1} ({hides})")
    return hide, remove


def cell_outputs(cell: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A code cell's outputs that are objects (a damaged ``outputs`` is named by :func:`malformed_cells`)."""
    outputs = cell.get("outputs")
    return [o for o in outputs if isinstance(o, Mapping)] if isinstance(outputs, list) else []


def malformed_cells(nb: Mapping[str, Any]) -> list[str]:
    """Cells that are not nbformat: a cell that is no object, a source that is not text (or a list of
    text), a code cell's ``outputs`` that is no list or holds a non-object. Called by ``verify_notebook``."""
    problems: list[str] = []
    for index, cell in enumerate(nb.get("cells") or []):
        label = f"cell {index + 1}"
        if not isinstance(cell, Mapping):
            problems.append(f"{label}: is not a notebook cell (a {type(cell).__name__}, not an object)")
            continue
        src = cell.get("source", "")
        if not isinstance(src, str) and not (isinstance(src, list) and all(isinstance(x, str) for x in src)):
            problems.append(f"{label}: its source is not text (a list of strings or a string)")
        outputs = cell.get("outputs", [])
        if cell.get("cell_type") != "code":
            continue
        if not isinstance(outputs, list):
            problems.append(f"{label}: its outputs are a {type(outputs).__name__}, not a list")
        elif any(not isinstance(o, Mapping) for o in outputs):
            problems.append(f"{label}: its outputs hold something that is not an output object")
    return problems + shape_problems(nb)


def kernelspec_level_warning(nb: Mapping[str, Any], levels: set[str]) -> str | None:
    """A kernelspec naming a level (``glsandbox-strict``) other than the one the records say the cells ran at.

    ``glsandbox`` names no level (the kernel's config file gives it); ``levels`` are the records'
    ``security_level`` values. What JupyterLab's kernel indicator shows must not claim a stronger level.
    """
    meta = nb.get("metadata") or {}
    spec = meta.get("kernelspec") if isinstance(meta, Mapping) else None
    name = str(spec.get("name", "")) if isinstance(spec, Mapping) else ""
    if not name.startswith("glsandbox-") or not levels:
        return None
    claimed = next((p for p in name.split("-")[1:] if p in ("strict", "moderate", "lenient")), None)
    if claimed is None or levels == {claimed}:
        return None
    return (
        f"kernelspec {name!r} names level {claimed}, but the records say the cells ran at "
        f"{', '.join(sorted(levels))} (run at another level than the kernel name claims)"
    )


#: deeper than this a notebook holds no glsandbox content (RFC 8785's encoder stops at 200 levels)
_MAX_NOTEBOOK_DEPTH = 190


def unencodable_values(value: Any) -> tuple[Any, list[str]]:
    """``(value with what no canonical JSON can hold replaced by marker text, where each was)``.

    NaN and infinities (Python's ``json`` reads them), ints beyond a double's range and nesting
    past :data:`_MAX_NOTEBOOK_DEPTH` cannot be in content a record or a seal covers; replaced,
    covered hashes no longer match and the checks name the place instead of crashing (elsewhere:
    a warning; ``--strict`` fails on it).
    Who calls: ``verify_notebook`` first, on the untrusted notebook (host side).
    """
    found: list[str] = []
    plain = (str, bool, type(None))

    def where(path: tuple[Any, ...]) -> str:
        parts: list[str] = []
        while path:
            path, key = path
            parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        return "".join(reversed(parts)).lstrip(".") or "notebook"

    def walk(item: Any, path: tuple[Any, ...], depth: int) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            found.append(f"{where(path)} ({item})")
            return f"<not JSON: {item}>"
        if isinstance(item, int) and not isinstance(item, bool) and item.bit_length() > 1023:
            found.append(f"{where(path)} (an int of {item.bit_length()} bits)")
            return "<not JSON: an int beyond a double>"
        if isinstance(item, (Mapping, list)) and depth >= _MAX_NOTEBOOK_DEPTH:
            found.append(f"{where(path)} (nested past {_MAX_NOTEBOOK_DEPTH} levels)")
            return "<not JSON: nested too deeply>"
        if isinstance(item, Mapping):
            return {k: v if type(v) in plain else walk(v, (path, k), depth + 1) for k, v in item.items()}
        if isinstance(item, list):
            if all(type(v) is str for v in item):  # stream lines, sources: nothing to replace
                return item
            return [v if type(v) in plain else walk(v, (path, i), depth + 1) for i, v in enumerate(item)]
        return item

    cleaned = walk(value, (), 0)
    return cleaned, [f"{where[:160]}: a value that is not JSON (RFC 8259) nor in any record" for where in found[:20]]
