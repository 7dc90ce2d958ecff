"""Prompt numbers a saved notebook shows, checked against each other (host side).

Who calls: :func:`glsandbox_kernel.notebook.verify.verify_notebook`, after the per-cell
checks. No hash or signature covers prompt numbers (``cell.execution_count`` and an
``execute_result``'s, listed in :data:`.evidence.VOLATILE_FIELDS`), and no record holds
one; but what the kernel writes in one clean run is consistent, and a reader takes the
numbers as the order of execution. So each disagreement is a warning naming the cell,
and ``--strict`` fails on it (the cell is marked ``renumbered``):

- an ``execute_result`` showing ``Out[7]`` in a cell shown as ``In [1]`` (one showing no number is left
  alone: nbformat allows it, and it claims no place in the order);
- prompt numbers that do not increase down the notebook where the records' ``seq`` does
  (the cells ran in order, their numbers were changed after).

Nothing here runs code from the notebook; the notebook is untrusted input.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from .checks import CellCheck


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_prompt_numbers(checks: Sequence[CellCheck], cells: Sequence[Any]) -> None:
    """Add a warning to each cell whose prompt numbers disagree (see the module docstring)."""
    for check in checks:
        cell = cells[check.index]
        outputs = cell.get("outputs") if isinstance(cell, Mapping) else None
        if check.record is None or not isinstance(outputs, list):
            continue
        shown = [
            o.get("execution_count")
            for o in outputs
            if isinstance(o, Mapping) and o.get("output_type") == "execute_result"
        ]
        wrong = sorted({str(c) for c in shown if c is not None and _count(c) != check.execution_count}, key=str)
        if wrong:
            check.renumbered = True
            check.warnings.append(
                f"{check.label}: its result shows Out[{', '.join(w[:20] for w in wrong)}], not its own prompt "
                "number: the execution counts were changed after it ran (prompt numbers are not covered)"
            )
    ran = [c for c in checks if c.record is not None and _count(c.execution_count) is not None]
    for a, b in itertools.pairwise(ran):
        assert a.record is not None and b.record is not None
        same_session = a.record.get("session_id") == b.record.get("session_id")
        sa, sb = _count(a.record.get("seq")), _count(b.record.get("seq"))
        if same_session and sa is not None and sb is not None and sa < sb:
            if int(a.execution_count or 0) >= int(b.execution_count or 0):
                b.renumbered = True
                b.warnings.append(
                    f"{b.label}: its prompt number is not above that of {a.label}, which ran before it: the "
                    "execution counts were changed after the cells ran (the records' seq gives the order)"
                )
