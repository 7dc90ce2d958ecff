"""The kernel's start-up: the worker before the first cell, the monitor's libraries when idle (host side).

:class:`StartUp` is a mixin of :class:`~glsandbox_kernel.kernel.kernel.SandboxKernel`
(it uses the kernel's ``get_sandbox``, ``evidence`` and its activity fields):
the worker and its shell start in a background thread from ``start()`` and
again on ``kernel_info`` (once; the thread waits until the kernel has started,
:func:`.prestart.wait`), so the first cell pays nothing extra; the
chart and widget libraries of the cell monitor are imported only after the
kernel has been idle for :data:`PREWARM_IDLE` seconds, never beside a cell.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .prestart import trace
from .quick import QUICK_TIMEOUT
from .relay import log

#: seconds without a cell before the kernel imports its chart and widget libraries (:meth:`_prewarm_when_idle`)
PREWARM_IDLE = 1.0


class StartUp:
    """Mixin: the background start of the worker and the idle prewarm (host side, the kernel process)."""

    _prewarmed: bool
    _prestarted: bool
    _running: int
    _last_activity: float
    evidence: Any
    get_sandbox: Callable[..., Any]  # SandboxKernel.get_sandbox

    def _prestart(self) -> None:
        """Background thread: start the worker and its IPython shell before the first cell."""
        from .prestart import wait

        trace("prestart: begin")
        wait()  # once the kernel started (or a request needs the sandbox): not beside ipykernel's set-up
        try:
            sandbox = self.get_sandbox()
            trace("prestart: sandbox started")
            sandbox.request({"type": "is_complete", "code": ""}, "is_complete_reply", timeout=QUICK_TIMEOUT)
            trace("prestart: shell answered")
        except Exception:  # noqa: BLE001 - the first cell reports the problem
            log.warning("could not start the sandbox ahead of the first cell", exc_info=True)

    def _start_sandbox_soon(self) -> None:
        """Start the worker and its shell in the background, once (before the first cell needs it)."""
        self._start_worker_soon()
        self._prewarm_when_idle()

    def _prewarm_when_idle(self) -> None:
        """Import the monitor's chart and widget libraries once the kernel has been idle a while.

        They take a few hundred ms of this process's CPU (and the GIL) and only cells
        longer than the monitor's ``LIVE_AFTER`` need them (which import them then),
        so they never run beside the first cell: a timer checks that no cell ran for
        :data:`PREWARM_IDLE` seconds, and looks again later otherwise.
        """
        if self._prewarmed:
            return
        idle = time.monotonic() - self._last_activity
        if self._running or idle < PREWARM_IDLE:
            timer = threading.Timer(PREWARM_IDLE - min(idle, PREWARM_IDLE / 2), self._prewarm_when_idle)
            timer.daemon = True
            timer.start()
            return
        self._prewarmed = True
        self.evidence.prewarm()

    def _start_worker_soon(self) -> None:
        """The worker and its shell, in a background thread, once (from start(), before "ready")."""
        if self._prestarted:
            return
        self._prestarted = True
        threading.Thread(target=self._prestart, name="glsandbox-prestart", daemon=True).start()
