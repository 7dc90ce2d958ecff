"""What one container may hold: its rlimits and the sizes of its tmpfs mounts (HOST side).

Called by :func:`.settings.container_settings` only; pure (builds values, starts nothing).
"""

from __future__ import annotations

from typing import Any

from ...config import OSSandboxConfig


def ulimits(config: OSSandboxConfig) -> list[dict[str, Any]]:
    """HOST side: the container's rlimits. ``msgqueue`` 0: POSIX message queues reserve bytes of the
    uid's RLIMIT_MSGQUEUE, counted per user machine-wide (every sandbox is 65534), so one sandbox
    used to leave none to the host's processes of that uid or to other sandboxes; the namespace
    backend's ``mq_open`` fails too. ``sigpending``: queued signals are counted per user machine-wide
    as well (see :data:`~glsandbox_kernel.confinement.rlimits.SIGNALS_PENDING_MAX`)."""
    from ...confinement.rlimits import SIGNALS_PENDING_MAX

    lim = config.limits
    ulimits: list[dict[str, Any]] = [{"name": "core", "soft": 0, "hard": 0}, {"name": "msgqueue", "soft": 0, "hard": 0}]
    ulimits.append({"name": "sigpending", "soft": SIGNALS_PENDING_MAX, "hard": SIGNALS_PENDING_MAX})
    if lim.max_file_size_bytes is not None:
        ulimits.append({"name": "fsize", "soft": int(lim.max_file_size_bytes), "hard": int(lim.max_file_size_bytes)})
    if lim.cpu_time_limit_seconds is not None:
        secs = max(1, int(lim.cpu_time_limit_seconds + 0.999))
        ulimits.append({"name": "cpu", "soft": secs, "hard": secs})
    return ulimits


def scratch_sizes(quota: int | None, memory: int | None) -> dict[str, int]:
    """HOST side: bytes for the working directory, ``/tmp`` and ``/dev/shm`` of one container.

    Each is its own tmpfs (Docker mounts one per path), so a disk quota is
    split between them (a half, a quarter, a quarter) and their sum is the
    quota; without one, each is bounded by the memory limit (tmpfs pages
    are charged to the container's memory).
    """
    if quota:
        work = max(int(quota) // 2, 1 << 20)
        tmp = max(int(quota) // 4, 1 << 20)
        return {"work": work, "tmp": tmp, "shm": max(int(quota) - work - tmp, 1 << 20)}
    if memory:
        return {"work": int(memory), "tmp": int(memory)}
    return {}
