"""How much of a cell's output the host keeps, host side of the trust boundary.

A sandbox limited to 256 MiB can print gigabytes: the host would keep every
byte (the collected outputs, the relay's messages, the text hashed into the
record), several times over. :class:`OutputBudget` bounds what one cell's
outputs hold on the host: past its budget (an eighth of the sandbox's memory
limit, within 8..128 MiB; :meth:`OutputBudget.for_memory_limit`), the stream
text is cut, one notice says so (a stderr stream, so the frontend shows and
saves it with the cell), and the rest is dropped and counted; the
cell's audit record carries the counts (:meth:`OutputBudget.record_fields`).
A ``clear_output`` frees what the cell showed, so the budget starts again.

Who calls: :class:`glsandbox_kernel.outputs.OutputCollector` (every worker
output frame of a cell, before it is relayed or kept) and
:meth:`glsandbox_kernel.sandbox.OSSandbox.run_cell` (the budget for its memory limit, the
record's fields).
"""

from __future__ import annotations

import sys
from typing import Any

from .units import fmt_bytes

#: what one cell's outputs may hold on the host (stream characters plus the text of display bundles)
#: when the sandbox has no memory limit; with one, an eighth of it within the bounds below (the host
#: holds a kept byte up to ~4 times: chunks, joined text, canonical form for the hash, messages)
MAX_CELL_OUTPUT_BYTES = 64 << 20
MIN_BUDGET, MAX_BUDGET = 8 << 20, 128 << 20

_FRAME_OVERHEAD = 256
#: an error past the budget is still shown (the worker's own, or the host's verdict) up to this size
_ERROR_ROOM = 64 << 10


#: the longest display id a sandbox frame may carry (like ``kernel.relay.MAX_COMM_ID``) and the longest
#: error name: the host keeps both (the collector's outputs, the relay's display scopes across cells)
MAX_DISPLAY_ID = 256
MAX_ENAME = 256
#: the largest prompt number a frame may carry (a sandbox int of any size is not kept)
MAX_EXECUTION_COUNT = 2**31 - 1
_STREAM_KEYS = ("type", "name", "text")


def frame_size(msg: dict[str, Any]) -> int:
    """About how many bytes an output frame holds on the host: every key and value of it.

    A stream counts its text (plus any other key it carries); any other frame a fixed overhead plus every
    value, ``transient``, ``ename`` and ``execution_count`` included (review 10: fields left out of the
    count were kept for free).
    """
    if msg.get("type") == "stream":
        text = msg.get("text")
        rest = [(k, v) for k, v in msg.items() if k not in _STREAM_KEYS]
        return (len(text) if isinstance(text, str) else 0) + (_value_size(rest) if rest else 0)
    return _FRAME_OVERHEAD + _value_size({k: v for k, v in msg.items() if k != "type"})


#: a relayed display id: the sandbox's own plus the kernel's cell scope (``~c<n>``, ``kernel.displays``), or
#: plus the magic's prefix and scope (``glsandbox-sandbox:<id>~c<n>``, ``magics.display.CellDisplays``)
MAX_SCOPED_DISPLAY_ID = MAX_DISPLAY_ID + 64


def display_id_of(transient: Any, longest: int = MAX_DISPLAY_ID) -> str | None:
    """The display id of a frame's ``transient`` part when it is a str of at most ``longest`` characters,
    else None (the only part of ``transient`` the host relays or keeps)."""
    display_id = transient.get("display_id") if isinstance(transient, dict) else None
    return str(display_id) if isinstance(display_id, str) and 0 < len(display_id) <= longest else None


def bounded_frame(msg: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """``(frame, cut)``: ``msg`` with its kept fields bounded and typed, or None to drop it; ``cut`` is about
    how many bytes were left out (the caller counts them as output over budget).

    ``transient`` becomes ``{"display_id": str}`` (at most :data:`MAX_DISPLAY_ID` characters) or ``{}``;
    an update without such an id is dropped; an ``error``'s ``ename`` is cut to :data:`MAX_ENAME`
    characters; an ``execute_result``'s ``execution_count`` is a small int or None.
    """
    kind = msg.get("type")
    cut = 0
    if kind in ("display_data", "update_display_data"):
        transient = msg.get("transient")
        display_id = display_id_of(transient)
        kept = {"display_id": display_id} if display_id is not None else {}
        raw = transient.get("display_id") if isinstance(transient, dict) else None
        same = type(transient) is dict and len(transient) == len(kept) and (not kept or type(raw) is str)
        if not same:  # no == on sandbox values
            cut = _value_size(transient) - _value_size(kept) if transient is not None else 0
            if kind == "update_display_data" and display_id is None:
                return None, frame_size(msg)
            msg = {**msg, "transient": kept}
    elif kind == "error":
        ename = msg.get("ename")
        if not isinstance(ename, str) or len(ename) > MAX_ENAME:
            bounded = str(ename[:MAX_ENAME]) if isinstance(ename, str) else "Error"
            cut = len(ename) - MAX_ENAME if isinstance(ename, str) else 0 if ename is None else _value_size(ename)
            msg = {**msg, "ename": bounded}
    elif kind == "execute_result":
        count = msg.get("execution_count")
        if count is not None and not (type(count) is int and 0 <= count <= MAX_EXECUTION_COUNT):
            cut = _value_size(count)
            msg = {**msg, "execution_count": None}
    return msg, max(0, cut)


def _value_size(value: Any) -> int:
    """The bytes a decoded value holds: every string, key and leaf at any depth, walked iteratively.

    No depth cut-off (a value ten lists deep counts its whole size). The walk visits each node once and
    every element adds at least 8 bytes, so it stops soon after the count passes ``MAX_BUDGET`` (more
    than any cell may keep, so the frame is over budget anyway): bounded cost even for a shared or
    cyclic value a caller might build.
    """
    size = 0
    stack = [value]
    while stack and size <= MAX_BUDGET:
        item = stack.pop()
        if isinstance(item, memoryview):
            size += item.nbytes
        elif isinstance(item, (str, bytes, bytearray)):
            size += len(item)
        elif isinstance(item, dict):
            size += 8 * len(item)
            if size <= MAX_BUDGET:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            size += 8 * len(item)
            if size <= MAX_BUDGET:
                stack.extend(item)
        elif isinstance(item, int):  # a sandbox int may be of any size
            size += 8 + item.bit_length() // 8
        else:  # an array or other codec value: its data, not just its reference
            nbytes = getattr(item, "nbytes", None)
            size += nbytes if type(nbytes) is int and nbytes > 8 else _sizeof(item)
    return size


def _sizeof(item: Any) -> int:
    try:
        return max(8, sys.getsizeof(item))
    except Exception:  # noqa: BLE001 - a decoded value whose size cannot be told: the least
        return 8


class OutputBudget:
    """The output budget of one cell (host side; the collector calls it under its lock)."""

    @classmethod
    def for_memory_limit(cls, memory_limit: int | None) -> OutputBudget:
        """The budget for a sandbox with this memory limit: what the host keeps stays well under it."""
        if memory_limit is None:
            return cls()
        return cls(min(MAX_BUDGET, max(MIN_BUDGET, memory_limit // 8)))

    def __init__(self, limit: int = MAX_CELL_OUTPUT_BYTES) -> None:
        self.limit = limit
        self.kept = 0
        #: what was dropped: frames (a cut stream chunk counts as one) and bytes
        self.dropped = 0
        self.dropped_bytes = 0
        self._noticed = False
        self._errors_past = 0
        #: widget (comm) traffic of the cell: its own count, never reset by clear_output
        self.comm_bytes = 0
        self.comm_dropped = 0

    def admit(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """The frames to relay and keep for ``msg``: itself, nothing (dropped), or its head plus the notice."""
        kind = msg.get("type")
        if kind == "clear_output":
            self.kept = 0
            self._noticed = False
            return [msg]
        size = frame_size(msg)
        if self.kept + size <= self.limit:
            self.kept += size
            return [msg]
        if kind == "error" and size <= _ERROR_ROOM and self._errors_past < 4:  # the cell's failure is shown
            self._errors_past += 1
            return [msg]
        self.dropped += 1
        room = max(0, self.limit - self.kept)
        out: list[dict[str, Any]] = []
        if kind == "stream" and room > 0:
            out.append({**msg, "text": msg["text"][:room]})
            size -= room
        self.kept = self.limit
        self.dropped_bytes += size
        if not self._noticed:
            self._noticed = True
            out.append(
                {
                    "type": "stream",
                    "name": "stderr",
                    "text": f"\n[glsandbox: this cell's output passed the host's budget of {fmt_bytes(self.limit)}; "
                    "the rest of it was dropped (the cell's audit record counts what)]\n",
                }
            )
        return out

    def cut(self, size: int) -> None:
        """A frame or part of one the host dropped before :meth:`admit` (:func:`bounded_frame`): counted as
        output over budget (no notice: the cell's output may still be within its budget)."""
        self.dropped += 1
        self.dropped_bytes += size

    def admit_comm(self, msg: dict[str, Any]) -> bool:
        """Whether a sandbox comm frame (open, msg or close) may still go to the frontend: comm traffic has a
        budget of its own. The whole frame counts: comm id, target name, data and metadata, not just data."""
        size = _FRAME_OVERHEAD + _value_size({k: v for k, v in msg.items() if k != "buffers"})
        buffers = msg.get("buffers")
        if isinstance(buffers, (list, tuple)):
            size += sum(len(b) for b in buffers if isinstance(b, (bytes, bytearray, memoryview)))
        if self.comm_bytes + size > self.limit:
            self.comm_dropped += 1
            return False
        self.comm_bytes += size
        return True

    def record_fields(self) -> dict[str, Any]:
        """The audit record's fields: nothing when nothing was dropped."""
        comm = {"comm_messages_dropped": self.comm_dropped} if self.comm_dropped else {}
        if not self.dropped:
            return comm
        return {
            **comm,
            "outputs_truncated": True,
            "outputs_dropped": self.dropped,
            "outputs_dropped_bytes": self.dropped_bytes,
            "outputs_budget_bytes": self.limit,
        }
