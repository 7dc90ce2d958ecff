"""Display ids scoped to the request that showed them, host side of the trust boundary.

Who calls: :meth:`glsandbox_kernel.kernel.relay.IOPubRelay.output`, through one
:class:`RequestDisplays` per request, for every sandbox ``display_data`` / ``update_display_data``
it publishes (relay threads share one :class:`DisplayScopes` per kernel).
"""

from __future__ import annotations

import threading
from typing import Any

#: sandbox display ids the kernel remembers across cells (for widget callbacks), oldest forgotten first;
#: each at most ``output_budget.MAX_DISPLAY_ID`` characters (the relay leaves longer ones out), so what is
#: kept here stays within a few MiB whatever the sandbox sends
MAX_DISPLAY_IDS = 4096
_SCOPES_LOCK = threading.Lock()


class DisplayScopes:
    """Which cell a sandbox display id belongs to (host side, one per kernel; relay threads share it).

    A sandbox ``display_id`` is relayed scoped to the request that created it (``acc`` -> ``acc~c7``), so
    an ``update_display`` reaches the outputs of its own request only: a later cell's update of an
    earlier cell's display is shown as a new output of the later cell, and the earlier cell's sealed
    output stays as its record hashed it (nbclient and JupyterLab update every output with the id). Nor
    can the sandbox update the kernel's own displays. A widget callback (a comm request, no cell of its
    own) is no different: its update of a cell's display is a new display of the callback's request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes = 0
        self._latest: dict[str, str] = {}

    @classmethod
    def of(cls, kernel: Any) -> DisplayScopes:
        """The kernel's scopes (made on first use)."""
        with _SCOPES_LOCK:
            scopes = getattr(kernel, "display_scopes", None)
            if not isinstance(scopes, DisplayScopes):
                scopes = cls()
                kernel.display_scopes = scopes
            return scopes

    def new_scope(self) -> str:
        with self._lock:
            self._scopes += 1
            return f"c{self._scopes}"

    def created(self, display_id: str, scope: str) -> str:
        """The relayed id of ``display_id`` shown in ``scope``; it is now the latest of that id."""
        scoped = f"{display_id}~{scope}"
        with self._lock:
            self._latest.pop(display_id, None)
            self._latest[display_id] = scoped
            while len(self._latest) > MAX_DISPLAY_IDS:
                del self._latest[next(iter(self._latest))]
        return scoped

    def latest(self, display_id: str) -> str | None:
        with self._lock:
            return self._latest.get(display_id)


class RequestDisplays:
    """The display ids of one request (a cell or a comm request) as relayed (host side, one per relay).

    Who calls: :meth:`IOPubRelay.output`, with content :func:`relay.content_for` already made safe.
    """

    def __init__(self, scopes: DisplayScopes, in_cell: bool) -> None:
        self._scopes = scopes
        self._in_cell = in_cell
        self._mine: set[str] = set()  # sandbox ids this request displayed
        self._scope: str | None = None  # made on first use

    def scoped(self, msg_type: str, content: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """``(msg_type, content)`` with its display id scoped to this request, or None (dropped).

        An update of an id this request displayed updates that display (a running cell's progress bar).
        An update of another request's display (a finished cell's, its record sealed; or a running
        cell's, whose record would not see it) is never an update: it becomes a new ``display_data``
        of this request, whose later updates follow it. That holds for a widget callback too (a comm
        request between cells); its new display shows where the frontend shows the callback's outputs
        (an Output widget, JupyterLab's log console), outside every sealed output. An update outside a
        cell of an id no request of this kernel displayed is dropped, as a frontend would ignore it.
        """
        display_id = content.get("transient", {}).get("display_id")
        if msg_type not in ("display_data", "update_display_data") or not isinstance(display_id, str):
            return msg_type, content
        if self._scope is None:
            self._scope = self._scopes.new_scope()
        if msg_type == "update_display_data" and display_id not in self._mine:
            if not self._in_cell and self._scopes.latest(display_id) is None:
                return None
            msg_type = "display_data"
        self._mine.add(display_id)
        if msg_type == "display_data":
            relayed = self._scopes.created(display_id, self._scope)
        else:
            relayed = f"{display_id}~{self._scope}"
        return msg_type, {**content, "transient": {**content["transient"], "display_id": relayed}}
