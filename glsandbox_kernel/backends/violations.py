"""Violations seen outside the worker, on their way to the session (host side).

One mixin for every worker kind that runs a seccomp supervisor or a network
proxy (the zygote workers, the container worker): the supervisor/proxy
thread calls :meth:`ViolationRelay._violation`; records seen before a session
listens (a warm-pool worker) are kept and handed over first by
:meth:`ViolationRelay.add_violation_listener`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import OSSandboxConfig


class ViolationRelay:
    """Supervisor attachment and violation routing (call :meth:`init_violations` in ``__init__``)."""

    supervisor: Any = None
    #: The worker's host network proxy, when it has one (its refusals are rate-limited per call too).
    proxy: Any = None

    def init_violations(self) -> None:
        self.supervisor = None
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._early: list[dict[str, Any]] = []
        self._listeners_lock = threading.Lock()

    def attach_supervisor(self, listener_fd: int, config: OSSandboxConfig) -> None:
        """Answer the worker's seccomp notifications on a host thread (called from on_hello)."""
        from ..supervisor import Supervisor, SupervisorPolicy

        policy = SupervisorPolicy(
            deny_exec=not config.new_programs_allowed,
            allowed_executables=tuple(config.whitelist.allowed_executables),
        )
        self.supervisor = Supervisor(listener_fd, on_violation=self._violation, policy=policy)

    def begin_call(self) -> None:
        """HOST side, called by the session when a call starts: the supervisor's (and the proxy's)
        rate limit starts afresh, so the new call's first violation of every kind is recorded."""
        for limited in (self.supervisor, self.proxy):
            if limited is not None:
                limited.begin_call()

    def end_call(self) -> None:
        """HOST side, called by the session when a call has ended (it is still the running call):
        the violations the supervisor's rate limit suppressed in it are written as a summary."""
        for limited in (self.supervisor, self.proxy):
            if limited is not None:
                limited.end_call()

    def _violation(self, record: dict[str, Any]) -> None:
        """Supervisor/proxy thread: deliver, or keep until a session listens (warm pool)."""
        with self._listeners_lock:
            listeners = list(self._listeners)
            if not listeners:
                self._early.append(record)
        for listener in listeners:
            listener(record)

    def add_violation_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Route violations to ``listener`` (the session), those seen before first."""
        with self._listeners_lock:
            self._listeners.append(listener)
            early, self._early = self._early, []
        for record in early:
            listener(record)
