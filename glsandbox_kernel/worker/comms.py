"""Comm relay, sandbox side: ``comm`` package hooks that send frames.

ipywidgets (and anything built on the ``comm`` package) created inside the
sandbox publish comm_open/comm_msg/comm_close frames; the host kernel relays
them to the frontend and relays the frontend's comm messages back here.
The widget manager's ``jupyter.widget.control`` comm is answered even before
ipywidgets is imported (:func:`control_comm_opened`).

``ipywidgets.Output`` capture (``with out: print(...)``, ``interact``,
``@out.capture()``) is done here, in the worker: ipykernel lets the frontend
catch outputs by the request's msg_id, which the sandbox does not know; so
while an Output is entered, :class:`OutputCapture` turns the output frames of
the worker (stream, display, result, error, clear_output) into entries of the
widget's ``outputs``, which reach the frontend as the widget's state. Works
for cells and for widget callbacks run between cells alike.
"""

from __future__ import annotations

import sys
from typing import Any

import comm
from comm.base_comm import BaseComm, CommManager

from .common import json_clean


class FrameComm(BaseComm):
    """A comm whose messages go to the host as frames."""

    worker: Any = None

    def publish_msg(
        self,
        msg_type: str,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
        **keys: Any,
    ) -> None:
        content = json_clean({"data": data or {}, "comm_id": self.comm_id, **keys})
        self.worker.flush_streams()
        self.worker.conn.send(
            {
                "type": msg_type,
                "content": content,
                "metadata": json_clean(metadata or {}),
                "buffers": [bytes(b) for b in (buffers or [])],
            }
        )


_CAPTURED = ("stream", "display_data", "execute_result", "error", "clear_output")


class OutputCapture:
    """SANDBOX side: diverts output frames into the innermost entered ``ipywidgets.Output``."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.stack: list[Any] = []
        self._send = worker.conn.send
        self._busy = False
        self._queue: list[dict[str, Any]] = []
        worker.conn.send = self.send

    def send(self, msg: dict[str, Any]) -> None:
        if not self.stack or msg.get("type") not in _CAPTURED:
            self._send(msg)
            return
        self._queue.append(msg)
        if self._busy:  # a widget update flushed streams: appended after this one
            return
        self._busy = True
        try:
            while self._queue:
                self._divert(self.stack[-1], self._queue.pop(0))
        finally:
            self._busy = False

    def _divert(self, out: Any, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "clear_output":
            if msg.get("wait"):
                out._glsandbox_clear_wait = True
            else:
                out.outputs = ()
            return
        items = () if getattr(out, "_glsandbox_clear_wait", False) else tuple(out.outputs)
        out._glsandbox_clear_wait = False
        if kind == "stream":
            if items and items[-1].get("output_type") == "stream" and items[-1].get("name") == msg["name"]:
                last = dict(items[-1], text=items[-1]["text"] + msg["text"])
                out.outputs = (*items[:-1], last)
                return
            item: dict[str, Any] = {"output_type": "stream", "name": msg["name"], "text": msg["text"]}
        elif kind == "error":
            item = {k: msg[k] for k in ("ename", "evalue", "traceback")}
            item["output_type"] = "error"
        else:
            item = {"output_type": kind, "data": msg.get("data", {}), "metadata": msg.get("metadata", {})}
            if kind == "execute_result":
                item["execution_count"] = msg.get("execution_count")
        out.outputs = (*items, item)

    def enter(self, out: Any) -> Any:
        self.worker.flush_streams()  # what was printed before belongs to the cell
        self.stack.append(out)
        return out

    def exit(self, out: Any, etype: Any, evalue: Any, tb: Any) -> bool | None:
        try:
            if etype is not None and issubclass(etype, Exception):
                from IPython import get_ipython

                ip = get_ipython()
                stb = ip.InteractiveTB.structured_traceback(etype, evalue, tb) if ip is not None else [str(evalue)]
                self.send({"type": "error", "ename": etype.__name__, "evalue": str(evalue), "traceback": stb})
            self.worker.flush_streams()
        finally:
            if out in self.stack:
                self.stack.remove(out)
        # Like ipywidgets in IPython: an error inside is shown in the widget, not raised.
        return True if etype is not None and issubclass(etype, Exception) else None


def _patch_output(worker: Any) -> None:
    """SANDBOX side: route ``ipywidgets.Output`` enter/exit through :class:`OutputCapture` (once)."""
    mod = sys.modules.get("ipywidgets.widgets.widget_output")
    output_cls = getattr(mod, "Output", None)
    if output_cls is None or getattr(output_cls, "_glsandbox_capture", None) is not None:
        return
    capture = OutputCapture(worker)
    output_cls._glsandbox_capture = capture
    output_cls.__enter__ = lambda self: capture.enter(self)
    output_cls.__exit__ = lambda self, etype, evalue, tb: capture.exit(self, etype, evalue, tb)


CONTROL_TARGET = "jupyter.widget.control"


def _ipywidgets_widget() -> Any:
    """ipywidgets' ``Widget`` class if the cell code imported ipywidgets, else None (never imports it)."""
    module = sys.modules.get("ipywidgets.widgets.widget")
    return getattr(module, "Widget", None)


def control_comm_opened(comm: Any, msg: dict[str, Any]) -> None:
    """SANDBOX side: the frontend's widget manager opened ``jupyter.widget.control`` (JupyterLab does
    when it connects, then sends ``request_states``). With ipywidgets loaded, ipywidgets answers;
    without it no widget exists: the answer is an empty ``update_states``, so the manager need not
    wait for a reply or fall back to asking widget by widget."""
    widget = _ipywidgets_widget()
    if widget is not None:
        widget.handle_control_comm_opened(comm, msg)
        return
    comm.on_msg(lambda m: _control_msg(comm, m))


def _control_msg(comm: Any, msg: dict[str, Any]) -> None:
    widget = _ipywidgets_widget()
    if widget is not None:  # imported since the comm opened: its widgets' states
        widget._control_comm = comm
        widget._handle_control_comm_msg(msg)
        return
    data = (msg.get("content") or {}).get("data") or {}
    if data.get("method") == "request_states":
        comm.send({"method": "update_states", "states": {}, "buffer_paths": []})


class CommRelay:
    """Holds the sandbox's CommManager; :meth:`handle` feeds it frontend messages."""

    def __init__(self, worker: Any) -> None:
        FrameComm.worker = worker
        self.manager = CommManager()
        comm.create_comm = self._create_comm
        comm.get_comm_manager = lambda: self.manager
        # ipywidgets registers its own targets when imported; until then the control comm still answers
        self.manager.register_target(CONTROL_TARGET, control_comm_opened)

    def _create_comm(self, *args: Any, **kwargs: Any) -> FrameComm:
        _patch_output(FrameComm.worker)  # widgets are imported by now
        return FrameComm(*args, **kwargs)

    def handle(self, msg: dict[str, Any]) -> None:
        content = msg.get("content") if isinstance(msg.get("content"), dict) else {}
        buffers = [memoryview(b) for b in msg.get("buffers") or [] if isinstance(b, (bytes, bytearray))]
        jmsg = {
            "content": content,
            "metadata": msg.get("metadata") or {},
            "buffers": buffers,
            "header": {"msg_type": msg["type"]},
        }
        getattr(self.manager, msg["type"])(None, None, jmsg)

    def info(self, target_name: Any) -> dict[str, Any]:
        return {
            cid: {"target_name": c.target_name}
            for cid, c in self.manager.comms.items()
            if target_name in (None, c.target_name)
        }


def install(worker: Any) -> CommRelay:
    """Replace the ``comm`` package's factory and manager (called once per shell)."""
    return CommRelay(worker)
