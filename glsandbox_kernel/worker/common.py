"""Pieces the worker's modules share (SANDBOX side): the signals user code may be stopped by,
and the wire-safe form of display data.

The loop, the shell and the comm relay import from here, never from each other's
modules, so the worker package has no import cycle (loop -> shell -> comms only).
"""

from __future__ import annotations

import base64
import signal
from types import TracebackType
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


#: frames of this package are the worker's own in a sandbox (its signal handlers, ``input()``, streams)
_WORKER_MODULES = __name__.partition(".")[0] + "."


def _worker_frame(tb: TracebackType) -> bool:
    name = tb.tb_frame.f_globals.get("__name__")
    return isinstance(name, str) and name.startswith(_WORKER_MODULES)


def user_traceback(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without the worker's own frames at either end, as stock ipykernel shows an interrupt.

    An interrupt or a stop is raised by the worker's signal handler (``loop._interrupt_handler``),
    so the traceback's innermost frames are the worker's (also its stream writer's, when it came
    during a ``print``), not the cell's last line; a function call's outermost frame is the loop's
    ``handle_call``. Cuts the chain in place (``tb_next``), so the
    exception's own ``__traceback__`` (``%debug``, ``sys.last_traceback``) agrees. Unchanged when
    every frame is the worker's (a failure of the worker itself, where its frames are the story).
    """
    first = tb
    while first is not None and _worker_frame(first):
        first = first.tb_next
    if first is None:
        return tb
    last, cur = first, first.tb_next
    while cur is not None:
        if not _worker_frame(cur):
            last = cur
        cur = cur.tb_next
    last.tb_next = None
    return first


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
