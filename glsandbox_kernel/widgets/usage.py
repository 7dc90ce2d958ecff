"""``usage_request`` answered with the sandbox's numbers (host side, kernel process).

jupyter-resource-usage's "Kernel usage" panel sends ``usage_request`` on the
control channel and shows ``kernel_cpu`` (percent) and ``kernel_memory``
(bytes) of the reply (ipykernel's ``Kernel.usage_request`` measures its own
process tree). The glsandbox kernel runs no user code, so its own numbers
say nothing: :class:`UsageTracker` reports the sandboxed worker tree instead,
measured from outside (the backend's cgroup or container stats, else /proc),
plus the host figures ipykernel reports.

Who calls: ``SandboxKernel.usage_request`` (in a thread: reading cgroups
and /proc blocks).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any


class UsageTracker:
    """Keeps the previous CPU reading so that ``kernel_cpu`` is a rate between two requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[int, float, float] | None = None  # (worker generation, monotonic, cpu seconds)

    def reply(self, sandbox: Any) -> dict[str, Any]:
        """The ``usage_reply`` content for ``sandbox`` (None: no sandbox yet)."""
        content: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid(), "cpu_count": os.cpu_count()}
        info: dict[str, Any] = {"measured": "sandbox worker tree, outside the sandbox"}
        content["glsandbox"] = info
        session = getattr(sandbox, "session", None)
        sample = None
        if session is not None:
            info["backend"] = str(getattr(sandbox, "isolation_type", ""))
            limits = getattr(sandbox.config, "limits", None)
            info["memory_limit"] = getattr(limits, "memory_limit_bytes", None)
            sample = session.sample()
        if session is not None and sample is not None:
            pids = session.host_pids()
            if pids:
                content["pid"] = pids[0]
            info.update(worker_pids=pids, source=sample.source, memory_peak=sample.memory_peak, pids=sample.pids)
            if sample.memory_current is not None:
                content["kernel_memory"] = int(sample.memory_current)
            cpu = self._cpu_percent(session.generation, sample.cpu_time, session)
            if cpu is not None:
                content["kernel_cpu"] = cpu
        else:
            info["worker"] = None
        _host_figures(content)
        return content

    def _cpu_percent(self, generation: int, cpu_time: float | None, session: Any) -> float | None:
        """CPU % of the worker tree since the previous request (or over a 0.1 s sample)."""
        if cpu_time is None:
            return None
        now = time.monotonic()
        with self._lock:
            last = self._last
            self._last = (generation, now, cpu_time)
        if last is None or last[0] != generation or now - last[1] < 0.05:
            time.sleep(0.1)
            later_sample = session.sample()
            again = later_sample.cpu_time if later_sample is not None else None
            if again is None:
                return None
            later = time.monotonic()
            with self._lock:
                self._last = (generation, later, again)
            return round(max(0.0, (again - cpu_time) / (later - now) * 100.0), 1)
        return round(max(0.0, (cpu_time - last[2]) / (now - last[1]) * 100.0), 1)


def _host_figures(content: dict[str, Any]) -> None:
    """``host_cpu_percent``, ``cpu_count`` and ``host_virtual_memory``, as ipykernel reports them."""
    try:
        import psutil
    except ImportError:
        return
    cpu_percent = psutil.cpu_percent()
    if cpu_percent:
        content["host_cpu_percent"] = cpu_percent
    content["cpu_count"] = psutil.cpu_count(logical=True)
    content["host_virtual_memory"] = dict(psutil.virtual_memory()._asdict())
