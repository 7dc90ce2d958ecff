"""Kernel-side comms for the glsandbox kernel process (host side, trusted).

:class:`~glsandbox_kernel.kernel.kernel.SandboxKernel` is an ipykernel
``Kernel``, not an ``IPythonKernel``: it has no comm manager of its own,
because user comms live in the sandbox and are relayed. The monitor widget,
though, is owned by the kernel process (it must keep updating while the
worker is busy or hung), so this module gives that process a comm layer:

- :func:`install` points the ``comm`` package (``comm.create_comm`` /
  ``comm.get_comm_manager``, which ipywidgets uses) at a :class:`KernelComm`
  that publishes on the kernel's IOPub socket, and at one
  :class:`comm.base_comm.CommManager` for the process;
- :meth:`KernelComms.owns` tells the kernel whether a comm message from the
  frontend is for one of these comms (dispatch it here with
  :meth:`KernelComms.dispatch`) or for a sandboxed widget (relay it).

Messages are sent with an explicit parent (the execute request of the cell
the widget belongs to, see :func:`parent_context`), so they may be sent from
the monitor's thread. Nothing here runs in the sandbox, and no user code runs
in this process: only the kernel's own widgets use these comms.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

from comm.base_comm import BaseComm, CommManager

_parent: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("glsandbox_comm_parent", default=None)


@contextlib.contextmanager
def parent_context(parent: dict[str, Any] | None) -> Iterator[None]:
    """Comms created inside this block send their messages with ``parent`` as parent header."""
    token = _parent.set(parent)
    try:
        yield
    finally:
        _parent.reset(token)


class KernelComm(BaseComm):
    """A comm of the kernel process, published on the kernel's IOPub socket."""

    def __init__(self, *args: Any, kernel: Any = None, parent: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.kernel = kernel if kernel is not None else _LAYER.kernel
        self.parent = parent if parent is not None else (_parent.get() or {})
        super().__init__(*args, **kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
        **keys: Any,
    ) -> None:
        kernel = self.kernel
        if kernel is None or getattr(kernel, "session", None) is None:
            return
        from ipykernel.jsonutil import json_clean

        content = json_clean({"data": data or {}, "comm_id": self.comm_id, **keys})
        kernel.session.send(
            kernel.iopub_socket,
            msg_type,
            content,
            parent=self.parent,
            metadata=json_clean(metadata or {}),
            ident=self.topic,
            buffers=[bytes(b) if not isinstance(b, (bytes, memoryview)) else b for b in (buffers or [])],
        )


class KernelComms:
    """The comm layer of one kernel process (see the module docstring)."""

    def __init__(self) -> None:
        self.kernel: Any = None
        self.manager = CommManager()
        self._lock = threading.Lock()
        self._installed = False

    def install(self, kernel: Any) -> KernelComms:
        """Bind to ``kernel`` and make ``comm.create_comm``/``get_comm_manager`` use this layer."""
        import comm

        with self._lock:
            self.kernel = kernel
            if not self._installed:
                comm.create_comm = self.create_comm  # type: ignore[assignment]
                comm.get_comm_manager = self.get_comm_manager  # type: ignore[assignment]
                self._installed = True
        return self

    def create_comm(self, *args: Any, **kwargs: Any) -> KernelComm:
        return KernelComm(*args, kernel=self.kernel, **kwargs)

    def get_comm_manager(self) -> CommManager:
        return self.manager

    def owns(self, comm_id: Any) -> bool:
        """True when ``comm_id`` is a comm of this process (not of the sandbox)."""
        return isinstance(comm_id, str) and comm_id in self.manager.comms

    def dispatch(self, stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        """Deliver a frontend comm_msg/comm_close for one of our comms to its handlers."""
        msg_type = parent.get("header", {}).get("msg_type")
        handler = getattr(self.manager, str(msg_type), None)
        if msg_type in ("comm_msg", "comm_close") and handler is not None:
            with parent_context(parent):
                handler(stream, ident, parent)


_LAYER = KernelComms()


def kernel_comms() -> KernelComms:
    """The process-wide comm layer (install it with ``kernel_comms().install(kernel)``)."""
    return _LAYER
