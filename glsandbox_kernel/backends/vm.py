"""VM backend (host side): reserved for a hardware-virtualised guest.

Not built yet: :meth:`VMBackend.available` always says why, so an explicit
``IsolationType.VM`` fails with a clear BackendUnavailableError (or falls back
to BASIC when ``fallback_to_basic=True``, recorded in the audit log).
"""

from __future__ import annotations

import os
from typing import ClassVar

from ..config import IsolationType
from ..exceptions import BackendUnavailableError
from .base import SandboxBackend, WorkerProcess


class VMBackend(SandboxBackend):
    """Placeholder registration so VM requests get a precise reason."""

    name: ClassVar[str] = "vm"
    isolation_type: ClassVar[IsolationType] = IsolationType.VM
    strength: ClassVar[int] = 100
    needs_daemon: ClassVar[bool] = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        kvm = "KVM is present" if os.path.exists("/dev/kvm") else "no /dev/kvm on this machine"
        return False, f"VM isolation is not implemented in this release ({kvm})"

    @classmethod
    def unavailable_hint(cls) -> str:
        return "use isolation 'container' or 'gvisor' for the strongest isolation available today"

    def start(self, *, session_id: str) -> WorkerProcess:
        _ok, reason = self.available()
        raise BackendUnavailableError(self.name, reason, self.unavailable_hint())
