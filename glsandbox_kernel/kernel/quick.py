"""Quick requests of the glsandbox kernel: complete, inspect, is_complete, history, comm_info (host side).

Each becomes one short request to the sandbox session; its reply is
untrusted and cleaned into a well-formed Jupyter reply. They never wait for
a running cell (an empty answer instead), so the control channel stays free.
Who calls: ipykernel's request handlers of :class:`~glsandbox_kernel.kernel.kernel.SandboxKernel`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..active_content import clean_bundle
from .relay import as_dict, json_safe, log, safe_text

#: seconds a quick request (completion, inspection...) may take before the session gives up.
QUICK_TIMEOUT = 30.0


class QuickRequests:
    """Mixin of SandboxKernel (before ipykernel's Kernel in the bases, so these handlers win)."""

    _running: int
    evidence: Any
    session: Any
    get_sandbox: Callable[..., Any]  # SandboxKernel.get_sandbox(*, start=True)

    async def _quick(self, msg: dict[str, Any], reply_type: str) -> dict[str, Any] | None:
        """A quick request's reply, or None when a cell is running or the sandbox failed.

        Never waits for a running cell: these requests may arrive on the
        control channel, which must stay free for interrupts.
        """
        if self._running:
            return None

        def call() -> dict[str, Any]:
            return self.get_sandbox().request(msg, reply_type, timeout=QUICK_TIMEOUT)  # type: ignore[no-any-return]

        try:
            reply = await asyncio.to_thread(call)
        except Exception:  # noqa: BLE001 - an empty answer, not a dead kernel
            log.warning("%s failed in the sandbox", msg["type"], exc_info=True)
            return None
        return reply if isinstance(reply, dict) else None

    async def do_complete(self, code: str, cursor_pos: int | None) -> dict[str, Any]:  # type: ignore[override]
        cursor = len(code) if cursor_pos is None else int(cursor_pos)
        reply = await self._quick({"type": "complete", "code": code, "cursor_pos": cursor}, "complete_reply") or {}
        matches = (
            [safe_text(m) for m in reply.get("matches", []) if isinstance(m, str)]
            if isinstance(reply.get("matches"), list)
            else []
        )
        start, end = reply.get("cursor_start"), reply.get("cursor_end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(code)):
            start = end = cursor
        return {
            "status": "ok",
            "matches": matches,
            "cursor_start": start,
            "cursor_end": end,
            "metadata": as_dict(reply.get("metadata")),
        }

    async def do_inspect(  # type: ignore[override]
        self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
    ) -> dict[str, Any]:
        msg = {"type": "inspect", "code": code, "cursor_pos": cursor_pos, "detail_level": int(detail_level)}
        reply = await self._quick(msg, "inspect_reply") or {}
        found = bool(reply.get("found"))
        return {
            "status": "ok",
            "found": found,
            "data": clean_bundle(as_dict(reply.get("data"))) if found else {},
            "metadata": as_dict(reply.get("metadata")) if found else {},
        }

    async def do_is_complete(self, code: str) -> dict[str, Any]:  # type: ignore[override]
        reply = await self._quick({"type": "is_complete", "code": code}, "is_complete_reply") or {}
        status = reply.get("status")
        if status not in ("complete", "incomplete", "invalid", "unknown"):
            status = "unknown"
        out: dict[str, Any] = {"status": status}
        if status == "incomplete":
            indent = reply.get("indent")
            out["indent"] = safe_text(indent) if isinstance(indent, str) else ""
        return out

    async def do_history(  # type: ignore[override]
        self,
        hist_access_type: str,
        output: bool,
        raw: bool,
        session: int | None = None,
        start: int | None = None,
        stop: int | None = None,
        n: int | None = None,
        pattern: str | None = None,
        unique: bool = False,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "history",
            "hist_access_type": hist_access_type,
            "output": bool(output),
            "raw": bool(raw),
            "unique": bool(unique),
        }
        for key, value in (("session", session), ("start", start), ("stop", stop), ("n", n), ("pattern", pattern)):
            if value is not None:
                msg[key] = value
        reply = await self._quick(msg, "history_reply") or {}
        history = (
            [json_safe(h) for h in reply.get("history", []) if isinstance(h, list) and len(h) == 3]
            if isinstance(reply.get("history"), list)
            else []
        )
        return {"status": "ok", "history": history}

    async def comm_info_request(self, stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        """The sandbox's comms (the kernel's own monitor widgets are not listed)."""
        self.evidence.note_frontend(parent)
        if self.session is None:
            return
        target = parent["content"].get("target_name")
        reply = await self._quick({"type": "comm_info", "target_name": target}, "comm_info_reply") or {}
        comms = {
            safe_text(str(cid)): {"target_name": safe_text(str(info.get("target_name")))}
            for cid, info in as_dict(reply.get("comms")).items()
            if isinstance(info, dict)
        }
        self.session.send(stream, "comm_info_reply", {"status": "ok", "comms": comms}, parent, ident)
