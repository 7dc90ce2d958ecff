"""Checks of the records a cell's audit output holds besides its own (host side, verifier).

Who calls: :func:`glsandbox_kernel.notebook.verify.verify_notebook`, once per code cell, through
:func:`held_records`. Everything here is read from the notebook (untrusted): nothing runs, no field
is assumed to have its type, and every finding is a problem or warning naming the cell.

- :func:`misplaced_cell_records`: a cell's record in ``preceding`` that did not run silently, or
  another cell's record in ``superseded`` (a deleted cell's record moved there).
- :func:`silent_runs`: a silent execute_request (``extra.silent``) ran code outside any cell
  between two cells; unless its code was provably empty, it is named (a warning; under
  ``--strict`` a problem): the cells below it may see state that no cell computes.
- :func:`mistyped_fields`: a record's number fields (``execution_time``, ``metrics.*``) that are
  not numbers (an edited record), named instead of crashing the verifier or the report.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics import SandboxMetrics
from ..terminal_text import printable

#: sha256 of empty code: a silent run of it executed nothing
EMPTY_CODE_HASH = hashlib.sha256(b"").hexdigest()
#: the number fields of a record's ``metrics`` (those :class:`..metrics.SandboxMetrics` types int or float)
METRIC_NUMBERS = tuple(
    f.name for f in dataclasses.fields(SandboxMetrics) if str(f.type).split(" | ")[0] in ("int", "float")
)
RECORD_NUMBERS = ("execution_time",)


def is_number(value: Any) -> bool:
    """An int or float (not a bool): what a record's figure may be, besides null."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number_or_none(value: Any) -> float | None:
    """A record figure as a float, None for anything else (never raises; host side, report/verify)."""
    if not is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int of 400 digits
        return None
    return number if math.isfinite(number) else None


def cell_extra(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A cell record's ``extra`` (None for a record of another kind: session start, violation, call)."""
    extra = record.get("extra")
    return extra if isinstance(extra, Mapping) and extra.get("kind") == "cell" else None


def held_records(
    check: Any,
    record: Mapping[str, Any],
    preceding: list[Any],
    superseded: list[Any],
    strict: bool,
    cells: Sequence[Any],
) -> None:
    """All checks of one cell's records (``check``: its ``CellCheck``; ``cells``: the cells seen so far)."""
    misplaced_cell_records(check, record, preceding, superseded, strict)
    silent_runs(check, preceding, "made before it", strict, cells)
    silent_runs(check, superseded, "of its earlier runs", strict, cells)
    mistyped_fields(check, record, [*preceding, *superseded])


def misplaced_cell_records(
    check: Any, record: Mapping[str, Any], preceding: list[Any], superseded: list[Any], strict: bool
) -> None:
    """A cell's record in ``preceding`` (not silent), or another cell's record in ``superseded``.

    The list layout of an audit output is covered by no hash: a deleted cell's record, moved
    unchanged into the next cell's ``preceding``, would keep the chain whole. Only a silent run's
    record (``extra.silent``, :func:`.evidence.cell_binding`) stands there; a record of an older
    glsandbox, which did not mark silent runs, is a warning (``--strict``: a problem).
    ``superseded`` holds the earlier runs of this cell: its cell records share the ``cell_id``
    of the cell's record (when the record names one).
    """
    for old in preceding:
        extra = cell_extra(old)
        if extra is None or extra.get("silent") is True:
            continue
        what = f"{check.label}: holds a cell's record (seq {old.get('seq')}) among the records made before it"
        if "silent" in extra:
            check.problems.append(f"{what}, without its cell: the cell was deleted (or a re-run's record moved)")
        elif strict:
            check.problems.append(f"--strict: {what} (a silent run of an older glsandbox, or a deleted cell)")
        else:
            check.warnings.append(f"{what}: a silent run (older glsandbox: not marked), or a deleted cell")
    own = cell_extra(record)
    if own is None or "cell_id" not in own:  # an older glsandbox: no cell id to compare
        return
    for old in superseded:
        extra = cell_extra(old)
        if extra is None or extra.get("silent") is True:
            continue
        if not isinstance(own.get("cell_id"), str) or extra.get("cell_id") != own.get("cell_id"):
            check.problems.append(
                f"{check.label}: holds as an earlier run of itself the record of another cell (seq "
                f"{old.get('seq')}): a deleted cell's record was moved there"
            )


def silent_code(extra: Mapping[str, Any]) -> tuple[str | None, str]:
    """``(the silent run's code when the record holds all of it and it matches the hash, its kind)``.

    The kind is ``empty``, ``an expression``, ``statements``, ``not Python`` (a magic, a shell
    escape), ``not recorded`` (an older glsandbox: only its hash), ``cut`` (longer than the record
    keeps) or ``not the hashed code``. Only ``empty`` could not change state.
    """
    code_hash = extra.get("source_hash")
    code = extra.get("silent_code")
    if code_hash == EMPTY_CODE_HASH:
        return "", "empty"
    if not isinstance(code, str):
        return None, "not recorded"
    if extra.get("silent_code_complete") is not True:
        return None, "cut"
    if hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest() != code_hash:
        return None, "not the hashed code"
    if not code.strip():
        return code, "empty"
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code, "not Python"
    return code, "an expression" if all(isinstance(s, ast.Expr) for s in body) else "statements"


_KINDS = {
    "not recorded": "its code (not recorded: an older glsandbox keeps only its hash)",
    "cut": "its code (cut: longer than the record keeps)",
    "not the hashed code": "its code (not the hashed code)",
}


def _ran_after(seq: Any, cells: Sequence[Any]) -> str:
    """The cell whose own record is the last one sealed before ``seq`` (among the cells seen so far)."""
    best: tuple[int, str] | None = None
    for cell in cells:
        own = cell.record.get("seq") if isinstance(cell.record, Mapping) else None
        if isinstance(seq, int) and isinstance(own, int) and own < seq and (best is None or own > best[0]):
            best = (own, cell.label)
    return best[1] if best is not None else "the start of its session"


def silent_runs(check: Any, held: list[Any], where: str, strict: bool, cells: Sequence[Any]) -> None:
    """Name each silent run among ``held`` (``preceding`` or ``superseded``) that executed code.

    A silent execute_request shows no output and no audit line, but its code runs in the same
    namespace: ``n = 1000`` between two cells changes what the cells below compute. Only a run
    of provably empty code (its hash is that of empty code, or the record holds the whole code
    and it is blank) passes ``--strict`` unnamed; what the worker says of its own run cannot
    count (the silent code runs there too).
    """
    runs = [(i, r) for i, r in enumerate(held) if (e := cell_extra(r)) is not None and e.get("silent") is True]
    for position, old in runs:
        extra = cell_extra(old) or {}
        code, kind = silent_code(extra)
        if kind == "empty":
            continue
        seq = old.get("seq")
        shown_seq = printable(str(seq), one_line=True)[:20]
        code_hash = printable(str(extra.get("source_hash")), one_line=True)[:16]
        shown = f": {printable(code, one_line=True)[:120]!r}" if code is not None else ""
        kind = _KINDS.get(kind, f"its code ({kind})")
        what = (
            f"{check.label}: a silent run (seq {shown_seq}, record {position + 1} of the {len(held)} {where}) ran code "
            f"outside any cell between {_ran_after(seq, cells)} and {check.label}: code sha256 {code_hash}…, "
            f"{kind}{shown}; the cells after it may show state that no cell computes"
        )
        if "not the hashed code" in kind:
            check.problems.append(f"{what}; the code the record holds is not the code it hashes")
        elif strict:
            check.problems.append(f"--strict: {what}")
        else:
            check.warnings.append(what)


def _mistyped(value: Any, names: Sequence[str], prefix: str) -> list[str]:
    if not isinstance(value, Mapping):
        return []
    return [
        f"{prefix}{name} is {printable(repr(value[name]), one_line=True)[:40]} (a {type(value[name]).__name__})"
        for name in names
        if name in value and value[name] is not None and not is_number(value[name])
    ]


def mistyped_fields(check: Any, record: Mapping[str, Any], held: list[Any]) -> None:
    """Number fields of the cell's record (and of the records it holds) that are not numbers."""
    for which, rec in [("its record", record), *((f"its held record (seq {r.get('seq')})", r) for r in held)]:
        wrong = _mistyped(rec, RECORD_NUMBERS, "")
        metrics = rec.get("metrics")
        if metrics is not None and not isinstance(metrics, Mapping):
            wrong.append(f"metrics is a {type(metrics).__name__}, not an object")
        wrong += _mistyped(metrics, METRIC_NUMBERS, "metrics.")
        violations = rec.get("violations")
        if violations is not None and not isinstance(violations, list):
            wrong.append(f"violations is a {type(violations).__name__}, not a list")
        if wrong:
            check.problems.append(
                f"{check.label}: {which} has mistyped field(s): {'; '.join(wrong)} (the record was edited)"
            )
