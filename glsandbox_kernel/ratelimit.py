"""The per-call rate limit of violation records (HOST side), shared by the seccomp supervisor and the network proxy.

Within a call each kind gets ``burst`` records, then at most one per
``interval`` seconds; a record after a pause carries ``repeats`` (how many of
the same kind were suppressed since the record before it), and what is still
suppressed is handed back as summary records (``summary: True`` and
``repeats``) when the call ends or the next one starts. Nothing is dropped
uncounted: :func:`glsandbox_kernel.supervisor.violation_count` of the records
adds up to every violation seen. ``max_kinds`` (optional) bounds the kinds
kept per call; further kinds share one overflow kind.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Hashable
from typing import Any

OVERFLOW: tuple[str] = ("<more kinds>",)


@dataclasses.dataclass
class _KindLimit:
    """Rate-limit state of one kind of violation within one call."""

    seen: int = 0
    suppressed: int = 0
    last_time: float = 0.0
    last_record: dict[str, Any] | None = None


class RecordLimiter:
    """Decides which violation records of a flood are written (thread-safe)."""

    def __init__(self, burst: int = 8, interval: float = 1.0, max_kinds: int | None = None) -> None:
        self.burst = burst
        self.interval = interval
        self.max_kinds = max_kinds
        self.suppressed = 0
        self._limits: dict[Hashable, _KindLimit] = {}
        self._lock = threading.Lock()

    def admit(self, key: Hashable, weight: int = 1) -> tuple[Hashable, int] | None:
        """``(kind, repeats)`` when a record of ``key`` is to be written now, else None (counted as suppressed).

        The kind is ``key``, or :data:`OVERFLOW` once ``max_kinds`` kinds are kept this call.
        ``weight``: the violations the record stands for, counted when it is suppressed (a relayed
        record that already carries ``repeats``).
        """
        now = time.time()
        with self._lock:
            if key not in self._limits and self.max_kinds is not None and len(self._limits) >= self.max_kinds:
                key = OVERFLOW
            lim = self._limits.setdefault(key, _KindLimit())
            lim.seen += 1
            if lim.seen > self.burst and now - lim.last_time < self.interval:
                lim.suppressed += weight
                self.suppressed += weight
                return None
            repeats, lim.suppressed, lim.last_time = lim.suppressed, 0, now
        return key, repeats

    def written(self, kind: Hashable, record: dict[str, Any]) -> None:
        """``record`` was written for ``kind`` (what a later summary copies)."""
        with self._lock:
            lim = self._limits.get(kind)
            if lim is not None:
                lim.last_record = record

    def summaries(self, *, reset: bool) -> list[dict[str, Any]]:
        """Summary records of what is suppressed and not yet summarised; ``reset``: a new call starts."""
        with self._lock:
            limits = list(self._limits.values())
            if reset:
                self._limits = {}
            out = []
            for lim in limits:
                count, lim.suppressed = lim.suppressed, 0
                if count and lim.last_record is not None:
                    out.append({**lim.last_record, "time": time.time(), "repeats": count, "summary": True})
        return out
