"""Worker output frames as nbformat outputs, relayed live (host side).

:class:`OutputCollector` turns the frames a running cell sends (streams,
displays, results, errors, input requests, comm frames) into the cell's
outputs and hands each to the caller's callbacks as it arrives;
:func:`relay_streams` prints a function call's output on the host's streams.
Who calls: :class:`glsandbox_kernel.sandbox.OSSandbox`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from .output_budget import MAX_SCOPED_DISPLAY_ID, OutputBudget, bounded_frame, display_id_of
from .session import InputCallback, OutputCallback
from .terminal_text import as_text, stream_text


def relay_streams(msg: dict[str, Any]) -> None:
    """Function calls: print the worker's stdout/stderr on the host's streams (no terminal controls but SGR)."""
    if msg.get("type") == "stream":
        stream = sys.stderr if msg.get("name") == "stderr" else sys.stdout
        text = msg.get("text")
        if isinstance(text, str):
            stream.write(stream_text(text))  # no OSC 52 (clipboard), titles or screen clears from the sandbox
            stream.flush()


#: what an ``on_output`` callback returns when it published nothing for a frame (the host could not show
#: it): the frame is then not recorded, since the record hashes what the frontend saves (a notice the
#: caller publishes through :meth:`OSSandbox.mark_output` says what was dropped)
NOT_SHOWN: dict[str, Any] = {"type": "not_shown"}


class InputAbandoned(Exception):
    """Raised by an ``on_input`` callback that gave up waiting for an answer (the cell's time ran out).

    No ``input_reply`` is sent: the worker keeps waiting in ``input()``, and the call's own
    timeout ends the cell (the worker is killed, the error and audit record are those of any
    other timeout) instead of an answer that would let the cell go on.
    """


class OutputCollector:
    """Turns worker output frames into nbformat outputs and relays them live."""

    def __init__(
        self, on_output: OutputCallback | None, on_input: InputCallback | None, on_comm: OutputCallback | None
    ) -> None:
        self.on_output = on_output
        self.on_input = on_input
        self.on_comm = on_comm
        self._outputs: list[dict[str, Any]] = []
        #: the kept displays by display id (an update finds its outputs without walking the cell's outputs)
        self._displays: dict[str, list[dict[str, Any]]] = {}
        #: the text chunks of the last output while it is a stream, joined once when read
        #: (``+=`` per chunk copies the whole text each time: quadratic in the output's size)
        self._tail: list[str] = []
        self._clear_pending = False
        self._lock = threading.Lock()
        self._closed = False
        self.budget = OutputBudget()
        #: a frame of the cell with fields of types the worker never sends (``results.refuse_tampered``)
        self.tampered: str | None = None

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The cell's outputs so far (nbformat dicts; a stream's chunks joined here, once)."""
        with self._lock:
            self._join_tail()
            return self._outputs

    def _join_tail(self) -> None:
        if len(self._tail) > 1:
            joined = "".join(self._tail)
            self._tail[:] = [joined]
            self._outputs[-1]["text"] = joined

    @property
    def clear_pending(self) -> bool:
        """A ``clear_output(wait=True)`` waits for the next output."""
        return self._clear_pending

    def mark(self, output: dict[str, Any], publish: Callable[[], None] | None) -> bool:
        """See :meth:`OSSandbox.mark_output`."""
        with self._lock:
            if self._closed:
                return False
            self._record({**output, "type": str(output.get("output_type", "display_data")), "_mark": True})
            if publish is not None:
                publish()
            return True

    def handle(self, msg: dict[str, Any], *, by_host: bool = False) -> dict[str, Any] | None:
        """One frame of the cell (the worker's; ``by_host``: the host's own error, sent by ``OSSandbox.run_cell``,
        which reaches ``on_output`` with ``_by_host`` set: a flag no worker frame keeps)."""
        kind = msg.get("type")
        if kind == "input_request":
            value, prompt = "", msg.get("prompt", "")
            if not isinstance(prompt, str):  # the worker sends text: sandboxed code forged this frame
                self.tampered = f"input_request prompt is {type(prompt).__name__}"
            if self.on_input is not None:
                try:
                    value = self.on_input(as_text(prompt), msg.get("password") is True)
                except (EOFError, KeyboardInterrupt):
                    return {"type": "input_reply", "value": None}
                except InputAbandoned:
                    return None
            return {"type": "input_reply", "value": value}
        if kind in ("comm_open", "comm_msg", "comm_close"):
            with self._lock:
                admitted = self.budget.admit_comm(msg)  # a close is charged too (it may carry data)
            if admitted and self.on_comm is not None:
                self.on_comm(msg)
            return None
        if kind not in ("stream", "display_data", "update_display_data", "execute_result", "error", "clear_output"):
            return None
        if "_mark" in msg or "_by_host" in msg:  # host-only flags: a worker frame is never kernel- or host-made
            msg = {k: v for k, v in msg.items() if k not in ("_mark", "_by_host")}
        bounded, cut = bounded_frame(msg)  # the kept fields bounded and typed, before they are relayed
        if by_host and bounded is not None:
            bounded = {**bounded, "_by_host": True}
        with self._lock:
            if cut:
                self.budget.cut(cut)
            if bounded is None:
                return None
            msg = bounded
            for frame in self.budget.admit(msg):  # past the cell's output budget: a notice, the rest dropped
                # ``on_output`` may return the frame as it published it (the kernel renames
                # sandbox-limit errors): that is what the frontend saves, so that is recorded.
                shown = self.on_output(frame) if self.on_output is not None else None
                if shown is NOT_SHOWN:  # nothing reached the frontend: nothing to record
                    continue
                # An update of another cell's display is published as a new output of this cell.
                kinds = (frame["type"], "display_data" if frame["type"] == "update_display_data" else None)
                self._record(shown if isinstance(shown, dict) and shown.get("type") in kinds else frame)
        return None

    def _record(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "clear_output":
            if msg.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            return
        if self._clear_pending:
            self._clear()
            self._clear_pending = False
        if kind == "stream":
            raw = msg.get("text")
            text = raw if isinstance(raw, str) else ""
            name = "stderr" if msg.get("name") == "stderr" else "stdout"
            if self._tail and self._outputs[-1]["name"] == name:
                self._tail.append(text)
            else:
                self._join_tail()
                self._outputs.append({"output_type": "stream", "name": name, "text": text})
                self._tail[:] = [text]
            return
        self._join_tail()
        self._tail.clear()
        if kind == "display_data":
            out: dict[str, Any] = {
                "output_type": "display_data",
                "data": _dict(msg.get("data")),
                "metadata": _dict(msg.get("metadata")),
            }
            display_id = display_id_of(msg.get("transient"), MAX_SCOPED_DISPLAY_ID)
            if display_id is not None:
                out["_display_id"] = display_id
                self._displays.setdefault(display_id, []).append(out)
            if msg.get("_mark"):
                out["_mark"] = True
            self._outputs.append(out)
        elif kind == "update_display_data":
            display_id = display_id_of(msg.get("transient"), MAX_SCOPED_DISPLAY_ID)
            for out in self._displays.get(display_id, []) if display_id is not None else []:
                out["data"] = _dict(msg.get("data"))
                out["metadata"] = _dict(msg.get("metadata"))
                if not msg.get("_mark"):
                    out.pop("_mark", None)  # the sandbox rewrote it: no longer kernel-made
        elif kind == "execute_result":
            count = msg.get("execution_count")
            self._outputs.append(
                {
                    "output_type": "execute_result",
                    "data": _dict(msg.get("data")),
                    "metadata": _dict(msg.get("metadata")),
                    "execution_count": count if type(count) is int else None,  # bounded by bounded_frame
                }
            )
        elif kind == "error":
            tb = msg.get("traceback")
            self._outputs.append(
                {
                    "output_type": "error",
                    "ename": as_text(msg.get("ename")),
                    "evalue": as_text(msg.get("evalue")),
                    "traceback": [as_text(x) for x in tb] if isinstance(tb, list) else [],
                }
            )

    def _clear(self) -> None:
        self._outputs.clear()
        self._tail.clear()
        self._displays.clear()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
