"""Worker frames to Jupyter messages, host side of the trust boundary.

Everything handled here came out of the sandbox and is hostile input: the
restricted decoder already limited the types, and this module makes each
frame a well-formed message content (string keys, JSON values, no NaN, known
payload sources only) before :class:`IOPubRelay` publishes it on IOPub with
the parent of the request that caused it. Nothing here renders or runs
outputs; the browser would, so script MIME types are dropped and markup is
sanitized on the way (:mod:`glsandbox_kernel.active_content`).

Who calls: :class:`glsandbox_kernel.kernel.kernel.SandboxKernel`, from the
thread that runs the sandbox request (the IOPub socket is thread-safe).
"""

from __future__ import annotations

import base64
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from ..active_content import clean_frame, clean_payload, clean_state, widget_refusal
from ..output_budget import MAX_DISPLAY_ID, display_id_of
from ..outputs import NOT_SHOWN
from ..terminal_text import safe_text
from .displays import DisplayScopes, RequestDisplays

log = logging.getLogger("glsandbox.kernel")

MAX_DEPTH = 64

#: payload sources a sandboxed cell may hand to the frontend (``ask_exit`` and ``edit_magic`` are not: the
#: sandbox must not open files or write what closes the frontend; ``exit`` is a worker flag, see safe_payload).
ALLOWED_PAYLOAD_SOURCES = frozenset({"page", "set_next_input"})


#: ints longer than this are not sent as numbers: Python refuses to print ints over 4300 digits
#: (``sys.int_info.str_digits_check_threshold``), so ``json.dumps`` of the message would fail.
MAX_INT_BITS = 14_000
#: ints of more bits are beyond a double's range and are not sent as numbers either (replaced by a
#: description, noted): a browser reads them as Infinity and saves ``null``, and ``audit verify``
#: (``notebook.checks.unencodable_values``) cannot hash them, so the record must not hold them.
DOUBLE_INT_BITS = 1023

Notes = list[str] | None


def _note(notes: Notes, why: str) -> None:
    if notes is not None and why not in notes:
        notes.append(why)


def json_safe(value: Any, depth: int = 0, notes: Notes = None) -> Any:
    """``value`` as JSON data that always serializes; what had to change is named in ``notes``.

    str keys, encodable text, finite floats, ints within a double's range, bounded
    nesting, bytes as base64 text.
    """
    if depth > MAX_DEPTH:
        _note(notes, f"nesting deeper than {MAX_DEPTH} levels (cut)")
        return None
    kind = type(value)
    if value is None or kind is bool:
        return value
    if kind is str:
        return safe_text(value, notes)
    if isinstance(value, int):
        if value.bit_length() > DOUBLE_INT_BITS:
            _note(notes, f"an integer of {value.bit_length()} bits, beyond a double (replaced by a description)")
            return f"<int of {value.bit_length()} bits>"
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        _note(notes, "a NaN or infinite number (sent as null)")
        return None
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                _note(notes, "a non-string key (sent as its text)")
                k = (
                    str(k)
                    if not isinstance(k, int) or k.bit_length() <= MAX_INT_BITS
                    else f"<int of {k.bit_length()} bits>"
                )
            out[safe_text(k, notes)] = json_safe(v, depth + 1, notes)
        return out
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1, notes) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    _note(notes, f"a {kind.__name__} value (sent as its text)")
    try:
        return safe_text(str(value)[:10_000], notes)
    except Exception:  # noqa: BLE001 - e.g. a huge Decimal: describe, never fail
        return f"<{kind.__name__}>"


def as_dict(value: Any, notes: Notes = None) -> dict[str, Any]:
    """A JSON-safe dict, or ``{}`` when ``value`` is not a dict."""
    return json_safe(value, 0, notes) if isinstance(value, dict) else {}


def as_text(value: Any, notes: Notes = None) -> str:
    return safe_text(value, notes) if isinstance(value, str) else ""


def as_lines(value: Any, notes: Notes = None) -> list[str]:
    if not isinstance(value, list):
        return []
    return [safe_text(x if isinstance(x, str) else str(json_safe(x, 0, notes)), notes) for x in value]


def safe_payload(payload: Any, notes: Notes = None, *, ask_exit: bool = False) -> list[dict[str, Any]]:
    """The cell's payloads the frontend may act on (pager, next input), cleaned; ``ask_exit`` (the
    worker's flag that the cell called ``exit``/``quit``): the kernel's own ``ask_exit`` payload."""
    out: list[dict[str, Any]] = [{"source": "ask_exit", "keepkernel": False}] if ask_exit is True else []
    if not isinstance(payload, list):
        return out
    for item in payload:
        if isinstance(item, dict) and item.get("source") in ALLOWED_PAYLOAD_SOURCES:
            out.append(clean_payload(as_dict(item, notes), notes))
    return out


def content_for(
    frame: dict[str, Any], execution_count: int | None, notes: Notes = None
) -> tuple[str, dict[str, Any]] | None:
    """The IOPub ``(msg_type, content)`` for one output frame, or None for an unknown frame.

    ``execute_result`` gets the kernel's execution count (the worker's own
    counter restarts with a fresh worker).
    """
    kind = frame.get("type")
    if kind == "stream":
        name = "stderr" if frame.get("name") == "stderr" else "stdout"
        return "stream", {"name": name, "text": as_text(frame.get("text"), notes)}
    if kind in ("display_data", "update_display_data"):
        content = {
            "data": as_dict(frame.get("data"), notes),
            "metadata": as_dict(frame.get("metadata"), notes),
            "transient": _transient(frame.get("transient"), notes),
        }
        if kind == "update_display_data" and not content["transient"].get("display_id"):
            return None
        return kind, content
    if kind == "execute_result":
        return "execute_result", {
            "execution_count": execution_count,
            "data": as_dict(frame.get("data"), notes),
            "metadata": as_dict(frame.get("metadata"), notes),
        }
    if kind == "error":
        return "error", {
            "ename": as_text(frame.get("ename"), notes) or "Error",
            "evalue": as_text(frame.get("evalue"), notes),
            "traceback": as_lines(frame.get("traceback"), notes),
        }
    if kind == "clear_output":
        return "clear_output", {"wait": bool(frame.get("wait"))}
    return None


def _transient(value: Any, notes: Notes) -> dict[str, Any]:
    """A display's ``transient`` part rebuilt as ``{"display_id": str}`` (bounded) or ``{}``: nothing else of
    it is relayed, and an id past :data:`MAX_DISPLAY_ID` characters is left out (noted)."""
    display_id = display_id_of(value)
    if display_id is None and isinstance(value, dict) and value.get("display_id") is not None:
        _note(notes, f"a display id that is not text of at most {MAX_DISPLAY_ID} characters (left out)")
    return {} if display_id is None else {"display_id": safe_text(display_id, notes)}


def comm_content(
    frame: dict[str, Any], notes: Notes = None
) -> tuple[str, dict[str, Any], dict[str, Any], list[bytes]] | None:
    """``(msg_type, content, metadata, buffers)`` of a sandbox comm frame, or None if malformed."""
    kind = frame.get("type")
    if kind not in ("comm_open", "comm_msg", "comm_close"):
        return None
    content = as_dict(frame.get("content"), notes)
    if not isinstance(content.get("comm_id"), str):
        return None
    if kind == "comm_open" and not isinstance(content.get("target_name"), str):
        return None
    why = widget_refusal(kind, content)
    if why is not None:  # code the frontend would load or a URL it would fetch
        if notes is not None:
            notes.append(f"a sandbox widget message dropped: {why}")
        return None
    # Rebuilt from the keys the messaging spec defines, nothing else: a ``target_module`` is a script
    # URL the classic Notebook loads with requirejs when the target is not registered.
    known: dict[str, Any] = {"comm_id": content["comm_id"]}
    if kind == "comm_open":
        known["target_name"] = content["target_name"]
    known["data"] = clean_state(content.get("data", {}), notes)  # widgets render state as HTML
    content = known
    buffers = [bytes(b) for b in frame.get("buffers") or [] if isinstance(b, (bytes, bytearray))]
    return kind, content, as_dict(frame.get("metadata"), notes), buffers


#: the longest comm id a sandbox may use, and how many comms may be open at once (host memory)
MAX_COMM_ID = 256
MAX_COMMS = 10_000


class CommGate:
    """Which comm ids the sandbox's comm frames may use (host side, one per kernel).

    The sandbox may speak on comms it opened itself and on comms the
    frontend opened towards it; never on the kernel's own (its monitor
    widgets) nor on ids it never saw. ``kernel_owns(comm_id)`` names the
    kernel's comms. Thread-safe (relay threads and the shell handler).
    """

    def __init__(self, kernel_owns: Callable[[str], bool]) -> None:
        self._kernel_owns = kernel_owns
        self._ids: set[str] = set()
        self._worker: Any = None
        self._lock = threading.Lock()

    def worker(self, key: Any) -> None:
        """The kernel names the worker a cell runs in: a replaced worker's comms are gone, so are their ids."""
        with self._lock:
            if key != self._worker:
                self._worker = key
                self._ids.clear()

    def frontend_message(self, key: Any, msg_type: str, comm_id: Any) -> None:
        """A frontend comm message the kernel delivers now to the worker ``key`` (as :meth:`worker`
        names it): a comm the frontend opens before the first cell belongs to that worker too."""
        self.worker(key)
        if msg_type == "comm_open":
            self.frontend_opened(comm_id)
        elif msg_type == "comm_close":
            self.frontend_closed(comm_id)

    def frontend_opened(self, comm_id: Any) -> None:
        """A frontend ``comm_open`` the kernel delivers to the sandbox."""
        if isinstance(comm_id, str) and len(comm_id) <= MAX_COMM_ID:
            with self._lock:
                if len(self._ids) < MAX_COMMS:
                    self._ids.add(comm_id)

    def frontend_closed(self, comm_id: Any) -> None:
        """A frontend ``comm_close``: the id is forgotten."""
        with self._lock:
            self._ids.discard(comm_id)

    def refuse(self, msg_type: str, comm_id: str) -> str | None:
        """Why a sandbox frame of ``msg_type`` for ``comm_id`` must be dropped, or None to forward it.

        Bounded: ids longer than :data:`MAX_COMM_ID` and more than :data:`MAX_COMMS` open ids are refused;
        a close forgets its id.
        """
        if len(comm_id) > MAX_COMM_ID:
            return f"a comm id longer than {MAX_COMM_ID} characters"
        if self._kernel_owns(comm_id):
            return "a comm of the kernel itself"
        with self._lock:
            if msg_type == "comm_open":
                if comm_id not in self._ids and len(self._ids) >= MAX_COMMS:
                    return f"more than {MAX_COMMS} open comms"
                self._ids.add(comm_id)
                return None
            if comm_id not in self._ids:
                return "a comm the sandbox did not open"
            if msg_type == "comm_close":
                self._ids.discard(comm_id)
        return None


#: stream text is coalesced into one IOPub message per this many seconds (ipykernel's
#: OutStream flushes every 0.2 s) ...
FLUSH_INTERVAL = 0.1
#: ... or once this many characters are pending, whichever comes first
FLUSH_SIZE = 4 << 20


class IOPubRelay:
    """Publishes sandbox frames for one request on IOPub (host side).

    ``rewrite_error`` may replace an error content before it is sent (the
    kernel uses it to name sandbox limits clearly). A frame that cannot be
    published is logged and dropped: a hostile frame never breaks the kernel.

    Stream text is coalesced as ipykernel's OutStream does: chunks of one
    stream are joined and published at most every :data:`FLUSH_INTERVAL`
    (a timer publishes the rest of a quiet stream) or past :data:`FLUSH_SIZE`;
    any other message first publishes what is pending, so the order holds.
    The kernel calls :meth:`flush` before its reply.
    """

    def __init__(self, kernel: Any, parent: dict[str, Any], execution_count: int | None = None) -> None:
        self.kernel = kernel
        self.parent = parent
        self.execution_count = execution_count
        #: ``(content, by_host)``: by_host when the frame is the host's own error (``_by_host``, see outputs.py)
        self.rewrite_error: Callable[[dict[str, Any], bool], dict[str, Any]] | None = None
        self.last_error: dict[str, Any] | None = None
        #: what had to be replaced so that the request's messages serialize (shown in one notice)
        self.replaced: list[str] = []
        self._lock = threading.RLock()
        self._pending: list[str] = []
        self._pending_name = "stdout"
        self._pending_size = 0
        self._timer: threading.Timer | None = None
        #: this request's display ids (kernel/displays.py), made on first use
        self._displays: RequestDisplays | None = None

    def _stream(self, name: str, text: str) -> None:
        """Queue stream text; publish it when due (under the lock that orders every send)."""
        with self._lock:
            if self._pending and name != self._pending_name:
                self._flush_locked()
            self._pending.append(text)
            self._pending_name = name
            self._pending_size += len(text)
            if self._pending_size >= FLUSH_SIZE:
                self._flush_locked()
            elif self._timer is None:
                self._timer = threading.Timer(FLUSH_INTERVAL, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Publish the pending stream text now (the timer, the kernel before its reply)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        self._publish("stream", {"name": self._pending_name, "text": text})

    def send(
        self,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
    ) -> None:
        with self._lock:
            self._flush_locked()
            self._publish(msg_type, content, metadata, buffers)

    def _publish(
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
        renamed error), so the session records what the frontend saves;
        :data:`~glsandbox_kernel.outputs.NOT_SHOWN` when nothing was published
        (a frame that could not be sent is named in the request's notice).
        """
        try:
            before = len(self.replaced)
            clean = clean_frame(frame, self.replaced)  # no script reaches the browser
            converted = content_for(clean, self.execution_count, self.replaced)
            if converted is None:
                return NOT_SHOWN
            msg_type, content = converted
            scoped = self._scope_display(msg_type, content)
            if scoped is None:
                return NOT_SHOWN
            # Replaced parts (and scoped display ids): the session records what the frontend got.
            changed = scoped[1] is not content or len(self.replaced) > before or clean is not frame
            msg_type, content = scoped
            shown = {"type": msg_type, **content} if changed else None
            if msg_type == "error":
                if self.rewrite_error is not None:
                    rewritten = self.rewrite_error(content, frame.get("_by_host") is True)
                    if rewritten is not content:
                        shown = {"type": "error", **rewritten}
                    content = rewritten
                self.last_error = content
            if msg_type == "stream":
                self._stream(content["name"], content["text"])
            else:
                self.send(msg_type, content)
            return shown
        except Exception as exc:  # a hostile frame never breaks the kernel
            log.warning("dropped an output frame from the sandbox", exc_info=True)
            why = f"an output the kernel could not send ({type(exc).__name__}, dropped)"
            if why not in self.replaced:
                self.replaced.append(why)  # the cell's notice says so; the record lists what was sent
            return NOT_SHOWN

    def _scope_display(self, msg_type: str, content: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """``(msg_type, content)`` with its display id scoped to this request (:class:`RequestDisplays`)."""
        if self._displays is None:
            in_cell = self.parent.get("header", {}).get("msg_type") == "execute_request"
            self._displays = RequestDisplays(DisplayScopes.of(self.kernel), in_cell)
        return self._displays.scoped(msg_type, content)

    def comm(self, frame: dict[str, Any]) -> None:
        """``on_comm`` callback: a sandboxed widget's comm message, to the frontend."""
        try:
            converted = comm_content(frame, self.replaced)
            if converted is None:
                log.warning("dropped a malformed comm frame from the sandbox")
                return
            msg_type, content, metadata, buffers = converted
            gate: CommGate | None = getattr(self.kernel, "comm_gate", None)
            why = gate.refuse(msg_type, content["comm_id"]) if gate is not None else None
            if why is not None:
                detail = f"{msg_type} for comm {content['comm_id'][:64]!r} ({why}) dropped"
                log.warning("sandbox %s", detail)
                record = getattr(self.kernel, "record_sandbox_violation", None)
                if record is not None:
                    record({"kind": "comm", "detail": detail, "action": "dropped", "escape": False})
                return
            self.send(msg_type, content, metadata=metadata, buffers=buffers)
        except Exception:
            log.warning("dropped a comm frame from the sandbox", exc_info=True)

    def note_replacements(self, mark: Callable[..., bool] | None = None) -> None:
        """One notice naming what was replaced in this request's messages (nothing when nothing was).

        ``mark`` as for :meth:`notice`: before the cell's record is sealed, the notice is one of its outputs.
        """
        if self.replaced:
            log.warning("replaced unserializable parts of a cell's messages: %s", "; ".join(self.replaced))
            self.notice(
                "glsandbox: parts of this cell's output or reply could not be sent to the frontend "
                "as they were and were replaced: " + "; ".join(self.replaced[:10]) + "\n",
                mark,
            )
            self.replaced = []

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
        ename, evalue = safe_text(str(ename), self.replaced), safe_text(str(evalue), self.replaced)
        lines = as_lines(traceback, self.replaced) if traceback else [f"{ename}: {evalue}"]
        content = {"ename": ename, "evalue": evalue, "traceback": lines}
        self.last_error = content
        self.send("error", content)
        return content
