"""What the glsandbox kernel adds around each cell: monitor, banner, audit output, usage (host side).

Who calls: :class:`glsandbox_kernel.kernel.kernel.SandboxKernel` (one
:class:`KernelEvidence` per kernel process). It keeps the kernel's own code
short:

- :meth:`KernelEvidence.start` binds the kernel process's comm layer
  (:mod:`.comms`) and imports the chart/widget libraries in the background;
- :meth:`KernelEvidence.note_frontend` learns from the frontend's messages
  whether it renders widgets (JupyterLab's and Notebook's widget managers open
  the ``jupyter.widget.control`` comm, or ask ``comm_info`` for
  ``jupyter.widget``, when they connect);
- :meth:`KernelEvidence.handle_comm` delivers frontend messages for the
  kernel's own comms (the monitor widget) here instead of to the sandbox;
- :meth:`KernelEvidence.cell_monitor` makes the cell's
  :class:`~.monitor.CellMonitor`, :meth:`KernelEvidence.emit_audit` emits the
  cell's audit output (its last output), and :meth:`KernelEvidence.usage` the
  ``usage_reply`` content.

Nothing here runs in the sandbox or runs user code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from ..notebook.evidence import AuditTrail
from .monitor import CellMonitor
from .usage import UsageTracker

log = logging.getLogger("glsandbox.widgets")

CONTROL_TARGET = "jupyter.widget.control"
WIDGET_TARGET = "jupyter.widget"


class KernelEvidence:
    """Per-kernel state for monitors, audit outputs and usage replies (see the module docstring).

    ``widgets``: ``"auto"`` (live widget when a widget frontend was seen),
    ``"always"`` or ``"never"`` (static summaries only).
    """

    def __init__(self, kernel: Any, *, widgets: str = "auto") -> None:
        self.kernel = kernel
        self.widgets = widgets
        self.widget_frontend = False
        self.trail = AuditTrail()
        self.usage_tracker = UsageTracker()
        self._comms: Any = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the comm layer to the kernel (called from the kernel's start)."""
        from .comms import kernel_comms

        self._comms = kernel_comms().install(self.kernel)

    def prewarm(self) -> None:
        """Import the chart and widget libraries in the background.

        Called once the kernel has answered its first kernel_info, so the
        imports never delay "ready".
        """
        threading.Thread(target=_prewarm, name="glsandbox-widgets-prewarm", daemon=True).start()

    @property
    def use_widgets(self) -> bool:
        if self.widgets == "always":
            return True
        if self.widgets == "never":
            return False
        return self.widget_frontend

    # -- frontend messages ------------------------------------------------------------------------
    def note_frontend(self, parent: Mapping[str, Any]) -> None:
        """Notice a widget frontend from a comm_open / comm_info_request it sent."""
        header = parent.get("header") or {}
        content = parent.get("content") or {}
        msg_type = header.get("msg_type")
        target = content.get("target_name") if isinstance(content, Mapping) else None
        if (msg_type == "comm_open" and target == CONTROL_TARGET) or (
            msg_type == "comm_info_request" and target in (WIDGET_TARGET, CONTROL_TARGET)
        ):
            self.widget_frontend = True

    def owns_comm(self, comm_id: Any) -> bool:
        """True for a comm of the kernel itself (its monitor widgets): never the sandbox's to use."""
        return self._comms is not None and bool(self._comms.owns(comm_id))

    def handle_comm(self, stream: Any, ident: Any, parent: dict[str, Any]) -> bool:
        """Deliver a comm_msg/comm_close for one of the kernel's own comms; False: not ours."""
        content = parent.get("content") or {}
        comm_id = content.get("comm_id") if isinstance(content, Mapping) else None
        if self._comms is None or not self._comms.owns(comm_id):
            return False
        try:
            self._comms.dispatch(stream, ident, parent)
        except Exception:
            log.warning("could not handle a message for the kernel's own comm", exc_info=True)
        return True

    # -- cells ----------------------------------------------------------------------------------------
    def cell_monitor(
        self, *, send: Any, sandbox: Any, parent: dict[str, Any], monitor: bool, limits: Mapping[str, Any] | None = None
    ) -> CellMonitor:
        """The monitor for one (non-silent) cell; the kernel calls ``start()``/``finish()``."""
        return CellMonitor(
            send=send, sandbox=sandbox, parent=parent, widgets=self.use_widgets, monitor=monitor, limits=limits
        )

    def emit_audit(
        self, send: Any, sandbox: Any, record: Mapping[str, Any] | None, execution_count: int | None
    ) -> None:
        """Publish the cell's audit output (display_data), its last output."""
        if record is None:
            return
        try:
            data, metadata = self.trail.bundle(sandbox, record, execution_count=execution_count)
            send("display_data", {"data": data, "metadata": metadata, "transient": {}})
        except Exception:
            log.warning("could not emit the audit output", exc_info=True)

    def usage(self, sandbox: Any) -> dict[str, Any]:
        """The ``usage_reply`` content: the sandbox's figures (blocking; call in a thread)."""
        return self.usage_tracker.reply(sandbox)


# -- the %%sandbox magic, in an ordinary IPython kernel (or terminal IPython) ------------------------------


def ipython_send() -> tuple[Any, dict[str, Any] | None, bool]:
    """``(send, parent, in_kernel)`` for the IPython process running ``%%sandbox``.

    In an ipykernel, ``send`` publishes on the kernel's IOPub socket with the
    current cell's request as parent (callable from any thread; the kernel's
    buffered stdout/stderr are flushed first so outputs keep their order). In
    terminal IPython, display messages are shown through IPython's display
    publisher (text) and comm messages are dropped.
    """
    import sys

    from IPython import get_ipython

    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and getattr(kernel, "session", None) is not None:
        parent = kernel.get_parent()

        def send(msg_type: str, content: dict[str, Any], metadata: Any = None, buffers: Any = None) -> None:
            if msg_type in ("display_data", "update_display_data"):
                for stream in (sys.stdout, sys.stderr):
                    # ipykernel's OutStream: flushing waits for its IO thread, so only when text waits.
                    if getattr(stream, "_flush_pending", True):
                        try:
                            stream.flush()
                        except Exception:  # noqa: BLE001 - a closed stream must not stop the monitor
                            pass
            kernel.session.send(
                kernel.iopub_socket,
                msg_type,
                content,
                parent=parent,
                metadata=metadata,
                buffers=buffers,
                ident=kernel._topic(msg_type),
            )

        return send, parent, True

    def show(msg_type: str, content: dict[str, Any], metadata: Any = None, buffers: Any = None) -> None:
        if msg_type not in ("display_data", "update_display_data"):
            return
        from IPython.display import publish_display_data

        data = {k: v for k, v in (content.get("data") or {}).items() if k == "text/plain"}
        if data:
            publish_display_data(data, content.get("metadata") or {})

    return show, None, False


def ipython_cell_monitor(sandbox: Any, *, monitor: bool = True) -> CellMonitor:
    """The monitor of one ``%%sandbox`` cell (the magic calls ``start()``/``finish()``).

    The live widget is used in a kernel started by a Jupyter server (JupyterLab,
    Notebook: ``$JPY_SESSION_NAME`` is set), or with ``$GLSANDBOX_MONITOR_WIDGETS=always``;
    elsewhere (nbclient, terminal IPython) a static summary is shown when the cell ends.
    """
    import os

    send, parent, in_kernel = ipython_send()
    choice = os.environ.get("GLSANDBOX_MONITOR_WIDGETS", "auto").lower()
    widgets = in_kernel and choice != "never" and (choice == "always" or "JPY_SESSION_NAME" in os.environ)
    if widgets:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            widgets = False
    return CellMonitor(send=send, sandbox=sandbox, parent=parent, widgets=widgets, monitor=monitor)


def ipython_emit_audit(trail: AuditTrail, sandbox: Any, record: Mapping[str, Any] | None) -> None:
    """Publish a ``%%sandbox`` cell's audit output (in a kernel only: a terminal saves nothing)."""
    if record is None:
        return
    send, _parent, in_kernel = ipython_send()
    if not in_kernel:
        return
    try:
        data, metadata = trail.bundle(sandbox, record)
        send("display_data", {"data": data, "metadata": metadata, "transient": {}})
    except Exception:
        log.warning("could not emit the audit output", exc_info=True)


def _prewarm() -> None:
    try:
        from .chart import prewarm

        prewarm()
        import ipywidgets  # noqa: F401
    except Exception:
        log.debug("could not pre-import the widget libraries", exc_info=True)
