"""Worker frames to Jupyter messages, host side of the trust boundary.

Everything handled here came out of the sandbox and is hostile input: the
restricted decoder already limited the types, and this module makes each
frame a well-formed message content (string keys, JSON values, no NaN, known
payload sources only) before :class:`IOPubRelay` publishes it on IOPub with
the parent of the request that caused it. HTML and JavaScript outputs are
passed on as data; nothing here renders or runs them.

Who calls: :class:`glsandbox_kernel.kernel.kernel.SandboxKernel`, from the
thread that runs the sandbox request (the IOPub socket is thread-safe).
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable
from typing import Any

log = logging.getLogger("glsandbox.kernel")

MAX_DEPTH = 64

#: payload sources a sandboxed cell may hand to the frontend (``ask_exit`` and
#: ``edit_magic`` are not: the sandbox must not close the notebook or open files).
ALLOWED_PAYLOAD_SOURCES = frozenset({"page", "set_next_input"})


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data: str keys, finite floats, bytes as base64 text."""
    if depth > MAX_DEPTH:
        return None
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON-safe dict, or ``{}`` when ``value`` is not a dict."""
    return json_safe(value) if isinstance(value, dict) else {}


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_lines(value: Any) -> list[str]:
    return [x if isinstance(x, str) else str(x) for x in value] if isinstance(value, list) else []


def safe_payload(payload: Any) -> list[dict[str, Any]]:
    """The cell's payloads the frontend may act on (pager, next input), cleaned."""
    out: list[dict[str, Any]] = []
    if not isinstance(payload, list):
        return out
    for item in payload:
        if isinstance(item, dict) and item.get("source") in ALLOWED_PAYLOAD_SOURCES:
            out.append(as_dict(item))
    return out


def content_for(frame: dict[str, Any], execution_count: int | None) -> tuple[str, dict[str, Any]] | None:
    """The IOPub ``(msg_type, content)`` for one output frame, or None for an unknown frame.

    ``execute_result`` gets the kernel's execution count (the worker's own
    counter restarts with a fresh worker).
    """
    kind = frame.get("type")
    if kind == "stream":
        name = "stderr" if frame.get("name") == "stderr" else "stdout"
        return "stream", {"name": name, "text": as_text(frame.get("text"))}
    if kind in ("display_data", "update_display_data"):
        content = {
            "data": as_dict(frame.get("data")),
            "metadata": as_dict(frame.get("metadata")),
            "transient": as_dict(frame.get("transient")),
        }
        if kind == "update_display_data" and not content["transient"].get("display_id"):
            return None
        return kind, content
    if kind == "execute_result":
        return "execute_result", {
            "execution_count": execution_count,
            "data": as_dict(frame.get("data")),
            "metadata": as_dict(frame.get("metadata")),
        }
    if kind == "error":
        return "error", {
            "ename": as_text(frame.get("ename")) or "Error",
            "evalue": as_text(frame.get("evalue")),
            "traceback": as_lines(frame.get("traceback")),
        }
    if kind == "clear_output":
        return "clear_output", {"wait": bool(frame.get("wait"))}
    return None


def comm_content(frame: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any], list[bytes]] | None:
    """``(msg_type, content, metadata, buffers)`` of a sandbox comm frame, or None if malformed."""
    kind = frame.get("type")
    if kind not in ("comm_open", "comm_msg", "comm_close"):
        return None
    content = as_dict(frame.get("content"))
    if not isinstance(content.get("comm_id"), str):
        return None
    if kind == "comm_open" and not isinstance(content.get("target_name"), str):
        return None
    content.setdefault("data", {})
    buffers = [bytes(b) for b in frame.get("buffers") or [] if isinstance(b, (bytes, bytearray))]
    return kind, content, as_dict(frame.get("metadata")), buffers


class IOPubRelay:
    """Publishes sandbox frames for one request on IOPub (host side).

    ``rewrite_error`` may replace an error content before it is sent (the
    kernel uses it to name sandbox limits clearly). A frame that cannot be
    published is logged and dropped: a hostile frame never breaks the kernel.
    """

    def __init__(self, kernel: Any, parent: dict[str, Any], execution_count: int | None = None) -> None:
        self.kernel = kernel
        self.parent = parent
        self.execution_count = execution_count
        self.rewrite_error: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.last_error: dict[str, Any] | None = None

    def send(
        self,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
    ) -> None:
        kernel = self.kernel
        if kernel.session is None:
            return
        kernel.session.send(
            kernel.iopub_socket,
            msg_type,
            content,
            parent=self.parent,
            metadata=metadata,
            buffers=buffers,
            ident=kernel._topic(msg_type),
        )

    def output(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        """``on_output`` callback of :meth:`OSSandbox.run_cell`.

        Returns the frame as published when it differs from ``frame`` (a
        renamed error), so the session records what the frontend saves.
        """
        try:
            converted = content_for(frame, self.execution_count)
            if converted is None:
                return None
            msg_type, content = converted
            shown = None
            if msg_type == "error":
                if self.rewrite_error is not None:
                    rewritten = self.rewrite_error(content)
                    if rewritten is not content:
                        shown = {"type": "error", **rewritten}
                    content = rewritten
                self.last_error = content
            self.send(msg_type, content)
            return shown
        except Exception:
            log.warning("dropped an output frame from the sandbox", exc_info=True)
            return None

    def comm(self, frame: dict[str, Any]) -> None:
        """``on_comm`` callback: a sandboxed widget's comm message, to the frontend."""
        try:
            converted = comm_content(frame)
            if converted is None:
                log.warning("dropped a malformed comm frame from the sandbox")
                return
            msg_type, content, metadata, buffers = converted
            self.send(msg_type, content, metadata=metadata, buffers=buffers)
        except Exception:
            log.warning("dropped a comm frame from the sandbox", exc_info=True)

    def stderr(self, text: str) -> None:
        """Text on stderr from the kernel itself (not part of the cell's audited outputs)."""
        self.send("stream", {"name": "stderr", "text": text})

    def notice(self, text: str, mark: Callable[..., bool] | None = None) -> None:
        """A notice from the kernel itself (state lost, limits), shown like stderr.

        A display_data with ``metadata.glsandbox.role = "notice"`` (for display).
        ``mark`` (``OSSandbox.mark_output``) publishes it as a kernel-made output
        of the running cell, so that the cell's audit record lists it.
        """
        import html

        from ..notebook.evidence import ROLE_NOTICE, role_metadata

        markup = (
            '<pre class="glsandbox-notice" style="background: var(--jp-rendermime-error-background, #fdd); '
            f'margin: 0; padding: 2px 6px;">{html.escape(text.rstrip())}</pre>'
        )
        data = {"text/plain": text.rstrip(), "text/html": markup}
        content = {"data": data, "metadata": role_metadata(ROLE_NOTICE), "transient": {}}
        if mark is not None and mark(
            {"output_type": "display_data", **content}, lambda: self.send("display_data", content)
        ):
            return
        self.send("display_data", content)

    def error(self, ename: str, evalue: str, traceback: list[str] | None = None) -> dict[str, Any]:
        """Publish an error output made by the kernel; returns the error reply content."""
        content = {"ename": ename, "evalue": evalue, "traceback": traceback or [f"{ename}: {evalue}"]}
        self.last_error = content
        self.send("error", content)
        return content
