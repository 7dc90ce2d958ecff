"""Comm relay, sandbox side: ``comm`` package hooks that send frames.

ipywidgets (and anything built on the ``comm`` package) created inside the
sandbox publish comm_open/comm_msg/comm_close frames; the host kernel relays
them to the frontend and relays the frontend's comm messages back here.
"""

from __future__ import annotations

from typing import Any

import comm
from comm.base_comm import BaseComm, CommManager


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
        from .shell import json_clean

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


class CommRelay:
    """Holds the sandbox's CommManager; :meth:`handle` feeds it frontend messages."""

    def __init__(self, worker: Any) -> None:
        FrameComm.worker = worker
        self.manager = CommManager()
        comm.create_comm = lambda *a, **k: FrameComm(*a, **k)
        comm.get_comm_manager = lambda: self.manager

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
