"""How a sandboxed cell's outcome looks local in the magic's IPython shell (host side).

Who calls: :class:`~glsandbox_kernel.magics.magic.SandboxMagics`. A failed
cell becomes an exception of the sandbox's own name (a subclass of
:class:`~glsandbox_kernel.exceptions.SandboxCellError` and, where it is a
builtin, or one of ours for the host's own verdicts, of that class too) shown with the sandbox's
traceback; each output frame is shown through IPython's display machinery.
Everything here is data the sandbox sent: names are checked, MIME bundles
passed on as outputs, nothing is evaluated.
"""

from __future__ import annotations

import builtins
import re
import sys
import threading
from typing import Any

from .. import exceptions as _exceptions
from ..exceptions import SandboxCellError
from ..kernel.relay import Notes, as_dict
from ..output_budget import MAX_SCOPED_DISPLAY_ID, display_id_of
from ..terminal_text import stream_text

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


#: (name, the host's own verdict) -> class: a worker's name never reaches a host verdict's class
_ERROR_CLASSES: dict[tuple[str, bool], type[SandboxCellError]] = {}
_ERROR_CLASSES_LOCK = threading.Lock()


def sandbox_error(
    ename: str, evalue: str, traceback: list[str] | None = None, *, host: bool = False
) -> SandboxCellError:
    """The exception to raise on the host for a failed sandboxed cell.

    ``host``: the verdict is the host's own (a refusal, a timeout or a limit it
    measured, a SandboxError it raised), so ``ename`` may name one of
    :mod:`glsandbox_kernel.exceptions`; a name the worker reported (any cell can
    define ``class SandboxSecurityError``) maps to a builtin base only.
    """
    name = ename if _NAME_RE.match(ename or "") else "SandboxError"
    with _ERROR_CLASSES_LOCK:
        cls = _ERROR_CLASSES.get((name, host))
        if cls is None:
            base = getattr(builtins, name, None) or (getattr(_exceptions, name, None) if host else None)
            bases: tuple[type, ...] = (SandboxCellError,)
            if isinstance(base, type) and issubclass(base, Exception) and base is not Exception:
                bases = (SandboxCellError, base)
            try:
                cls = type(name, bases, {"__module__": "glsandbox_kernel.sandbox"})
                cls(evalue)
            except TypeError:
                cls = type(name, (SandboxCellError,), {"__module__": "glsandbox_kernel.sandbox"})
            _ERROR_CLASSES[name, host] = cls
    try:
        exc = cls(evalue)
    except TypeError:
        exc = SandboxCellError(evalue)
    exc.ename = name
    exc.evalue = evalue
    exc.sandbox_traceback = list(traceback or []) or [f"{name}: {evalue}"]
    return exc


def install_error_display(shell: Any) -> tuple[tuple[type, ...], Any] | None:
    """Show SandboxCellError with the sandbox's traceback; keeps any handler already there."""
    previous_types = tuple(shell.custom_exceptions)
    if SandboxCellError in previous_types:
        return None
    previous = shell.CustomTB

    def handler(self: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> Any:
        if isinstance(value, SandboxCellError):
            lines = value.sandbox_traceback
            if prints_to_terminal(self):  # the sandbox's message: no OSC 52 or screen clear reaches the terminal
                lines = [stream_text(line) if isinstance(line, str) else line for line in lines]
            self._showtraceback(etype, value, lines)
            return None
        return previous(etype, value, tb, tb_offset=tb_offset)

    shell.set_custom_exc((*previous_types, SandboxCellError), handler)
    return previous_types, previous


def prints_to_terminal(shell: Any) -> bool:
    """Whether ``shell`` writes outputs to its own terminal (terminal IPython, an embedded
    ``InteractiveShell``), not to a kernel's frontend (ipykernel's shell has a ``kernel``)."""
    return getattr(shell, "kernel", None) is None


def terminal_frame(frame: dict[str, Any]) -> dict[str, Any]:
    """``frame`` with its ``text/plain`` filtered as stream text is (:func:`stream_text`: SGR colours
    and ``\r`` kept, OSC 52, titles, screen clears escaped), for a shell that prints it to a terminal.

    Who calls: ``SandboxMagics._run`` (host side), before the frame is shown and recorded, so the
    record lists what the terminal got."""
    data = frame.get("data")
    if frame.get("type") not in ("display_data", "update_display_data", "execute_result") or not isinstance(data, dict):
        return frame
    text = data.get("text/plain")
    if not isinstance(text, str):
        return frame
    safe = stream_text(text)
    return frame if safe == text else {**frame, "data": {**data, "text/plain": safe}}


class SandboxResult:
    """The value of a sandboxed cell's last expression, as the sandbox rendered it.

    Holds only the MIME bundle (untrusted data, shown as output); the value
    itself stays in the sandbox unless you copy it out with ``--out``.
    """

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.data = data
        self.metadata = metadata

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        text = self.data.get("text/plain")
        return text if isinstance(text, str) else "<sandbox result>"


#: the magic's display id space: a sandbox's ``acc`` is shown as ``glsandbox-sandbox:acc~c7``
SANDBOX_DISPLAY_PREFIX = "glsandbox-sandbox:"


class CellDisplays:
    """The display ids of one ``%%sandbox`` cell, scoped to it (host side; one per cell).

    Who calls: ``SandboxMagics._run``, on each frame before it is shown and returned to the
    collector, so the id recorded is the id shown. A sandbox display id ``acc`` is shown as
    ``glsandbox-sandbox:acc~c7`` (cell 7 of this shell), as the glsandbox kernel scopes its ids
    (:class:`~glsandbox_kernel.kernel.displays.DisplayScopes`): nbclient and JupyterLab update every
    output with an id, so a later cell's update of an earlier cell's display is shown as a new
    output of the later cell, and the earlier cell's sealed output stays as its record hashed it.
    The prefix keeps the sandbox out of the host cells' displays. The longest id made
    (``MAX_DISPLAY_ID`` characters, the prefix and the scope) fits ``MAX_SCOPED_DISPLAY_ID``,
    the bound the collector records ids with.
    """

    def __init__(self, cell: int) -> None:
        self.scope = f"~c{cell}"
        #: the sandbox's ids shown in this cell (bounded by the cell's output budget)
        self._own: set[str] = set()

    def scoped(self, frame: dict[str, Any]) -> dict[str, Any]:
        """``frame`` (a JSON-safe output frame) with its display id in this cell's scope; an update of
        a display this cell did not show becomes a ``display_data`` of this cell."""
        kind = frame.get("type")
        if kind not in ("display_data", "update_display_data"):
            return frame
        own = display_id_of(frame.get("transient"))
        if own is None:  # shown without an id (an update without one has no output to update)
            return {**frame, "transient": {}} if frame.get("transient") else frame
        if kind == "update_display_data" and own not in self._own:
            kind = "display_data"  # another cell's display: a new output of this cell
        self._own.add(own)
        return {**frame, "type": kind, "transient": {"display_id": f"{SANDBOX_DISPLAY_PREFIX}{own}{self.scope}"}}


def show_output(msg: dict[str, Any], executed: list[SandboxResult], notes: Notes = None) -> bool:
    """Display one sandbox output with IPython's machinery, as a local cell would; False if not shown.

    Display ids come scoped (:meth:`CellDisplays.scoped`). Keys and values are made JSON-safe as the
    kernel's relay does (an int key of 20 000 digits has no ``str``); what had to change is named in
    ``notes``. What is shown is what the kernel's relay shows (:func:`~glsandbox_kernel.kernel.relay.
    content_for`): a display with empty data too (the frontend saves it as an output), never an
    update without a display id (no output to update) nor a stream without text. The caller records
    the frame only when this returns True, so the cell's record lists what the frontend got.
    """
    from IPython.display import clear_output, publish_display_data

    kind = msg.get("type")
    if kind == "stream":
        text = msg.get("text")
        if not isinstance(text, str):
            return False
        # no OSC 52 (clipboard), titles or screen clears reach a terminal
        (sys.stderr if msg.get("name") == "stderr" else sys.stdout).write(stream_text(text))
    elif kind in ("display_data", "update_display_data"):
        data, metadata, transient = (as_dict(msg.get(k), notes) for k in ("data", "metadata", "transient"))
        display_id = display_id_of(transient, MAX_SCOPED_DISPLAY_ID)
        transient = {"display_id": display_id} if display_id is not None else {}
        if kind == "update_display_data":
            if not transient:
                return False
            publish_display_data(data, metadata, transient=transient, update=True)
        else:
            publish_display_data(data, metadata, transient=transient or None)
    elif kind == "execute_result":
        executed.append(SandboxResult(as_dict(msg.get("data"), notes), as_dict(msg.get("metadata"), notes)))
    elif kind == "clear_output":
        clear_output(wait=bool(msg.get("wait")))
    # "error" frames are shown when the cell's exception is raised, with the sandbox traceback.
    return True
