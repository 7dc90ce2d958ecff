"""Sizes for people (either side of the boundary, pure): the one ``fmt_bytes``.

Who calls: error messages (session, results, kernel limits: ``512.0 MiB``,
``unknown`` for a figure nobody measured) and the notebook evidence (audit
line, report, monitor: ``compact=True`` gives ``41 MiB`` and ``?``).
"""

from __future__ import annotations


def fmt_bytes(n: int | float | None, *, compact: bool = False) -> str:
    """``n`` bytes as ``B``/``KiB``/``MiB``/``GiB``; ``compact`` drops the decimal below GiB."""
    if n is None:
        return "?" if compact else "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if abs(value) < 1024:
            whole = unit == "B" or compact
            return f"{value:.0f} {unit}" if whole else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
