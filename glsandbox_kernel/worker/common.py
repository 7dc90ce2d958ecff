"""Pieces the worker's modules share (SANDBOX side): the signals user code may be stopped by,
and the wire-safe form of display data.

The loop, the shell and the comm relay import from here, never from each other's
modules, so the worker package has no import cycle (loop -> shell -> comms only).
"""

from __future__ import annotations

import base64
import signal
from typing import Any

from ..protocol import STOP_SIGNAL

#: SIGINT (interrupt) and the stop signal of enforcing mode: unblocked only while user code runs.
INTERRUPT_SIGNALS = {signal.SIGINT, STOP_SIGNAL}


#: ``[None]`` between requests; ``[False]`` once a request was read, ``[True]`` when a SIGINT came
#: for it before its user code started (raised there: :func:`raise_held`)
HELD: list[bool | None] = [None]


def raise_held() -> None:
    """Raise the KeyboardInterrupt that came for this request before its user code started."""
    if HELD[0]:
        HELD[0] = False
        raise KeyboardInterrupt


def drop_pending_interrupts() -> None:
    """Consume a SIGINT (or stop) that arrived while idle, so it cannot hit the next request."""
    while INTERRUPT_SIGNALS & signal.sigpending():
        signal.sigtimedwait(INTERRUPT_SIGNALS, 0)


def json_clean(obj: Any, depth: int = 0) -> Any:
    """Make a display bundle wire-safe: bytes become base64 text, tuples lists, nesting bounded."""
    if depth > 64:
        return "<nested too deep>"
    if isinstance(obj, dict):
        return {str(k): json_clean(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v, depth + 1) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)
