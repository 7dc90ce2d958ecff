"""Display ids scoped to the cell that showed them, host side of the trust boundary.

Who calls: :meth:`glsandbox_kernel.kernel.relay.IOPubRelay.output`, for every sandbox
``display_data`` / ``update_display_data`` it publishes (relay threads share one per kernel).
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
    an ``update_display`` reaches the outputs of its own cell only: a later cell's update of an earlier
    cell's display is shown as a new output of the later cell, and the earlier cell's sealed output stays
    as its record hashed it (nbclient and JupyterLab update every output with the id). Nor can the
    sandbox update the kernel's own displays. A widget callback (a comm request, no cell of its own)
    updates the latest cell's display of that id.
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
