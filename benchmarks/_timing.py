"""Side-by-side timing shared by the benchmark scripts (host side only).

Rounds alternate between the two sides so machine noise hits both alike;
the figure is the median over rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], n: int) -> float:
    """Mean seconds per call of ``fn`` over ``n`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def side_by_side(a: Callable[[], Any], b: Callable[[], Any], n: int, rounds: int) -> tuple[float, float]:
    """Median per-call seconds of ``a`` and ``b``, measured in alternating rounds."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timed(a, n))
        tb.append(timed(b, n))
    return statistics.median(ta), statistics.median(tb)
