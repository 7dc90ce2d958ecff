"""Frontend comm messages of the glsandbox kernel: delivered to the sandbox's comm manager (host side).

:class:`FrontendComms` is a mixin of :class:`~glsandbox_kernel.kernel.kernel.SandboxKernel`:
``comm_open``/``comm_msg``/``comm_close`` from the frontend go to the sandbox (its handlers, e.g.
an ipywidget's callback, run there, untrusted), in arrival order; what they output comes back as
IOPub messages. A callback is bounded by the kernel's ``timeout`` (the session's
``execution_timeout``, as a cell without ``%%sandbox --timeout``): past it the host kills the
worker, and the next cell's state-lost notice says so (``_lost_reason``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exceptions import SandboxTimeoutError
from .relay import IOPubRelay, log


class FrontendComms:
    """Mixin: the shell handler of frontend comm messages (host side, the kernel process)."""

    _lost_reason: str | None
    evidence: Any
    comm_gate: Any
    _comm_deliveries: Any  # parents.InOrder
    get_sandbox: Callable[..., Any]  # SandboxKernel.get_sandbox

    async def comm_request(self, stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        """Shell handler for comm_open/comm_msg/comm_close: deliver to the sandbox's comm manager."""
        msg_type = parent["header"]["msg_type"]
        self.evidence.note_frontend(parent)
        if self.evidence.handle_comm(stream, ident, parent):
            return  # a message for the kernel's own monitor widget
        comm_id = (parent.get("content") or {}).get("comm_id")
        buffers = [bytes(getattr(b, "buffer", b)) for b in parent.get("buffers") or []]
        frame = {
            "type": msg_type,
            "content": dict(parent.get("content") or {}),
            "metadata": dict(parent.get("metadata") or {}),
            "buffers": buffers,
        }
        relay = IOPubRelay(self, parent)

        def deliver() -> None:
            sandbox = self.get_sandbox()
            session = sandbox.session
            generation = session.generation
            self.comm_gate.frontend_message((id(session), generation), msg_type, comm_id)
            try:  # bounded by the kernel's timeout, as a cell is (none: timeout 0; an interrupt still stops it)
                sandbox.send_comm(frame, on_output=relay.output, on_comm=relay.comm, timeout="config")
            except Exception as exc:
                if not session.alive or session.generation != generation:  # for the next cell's state-lost notice
                    self._lost_reason = (
                        f"the host stopped a widget callback that ran past the kernel's {exc.timeout:g} s timeout"
                        if isinstance(exc, SandboxTimeoutError) and exc.timeout is not None
                        else f"{type(exc).__name__} in a widget callback"
                    )
                raise

        try:
            await self._comm_deliveries.run(deliver)
        except Exception:  # noqa: BLE001 - a widget message the sandbox could not take is logged
            log.warning("could not deliver %s to the sandbox", msg_type, exc_info=True)
        finally:
            relay.flush()


__all__ = ["FrontendComms"]
