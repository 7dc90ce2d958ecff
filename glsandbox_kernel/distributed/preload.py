"""``dask worker ... --preload glsandbox_kernel.distributed.preload``: the plugin from the start (worker side).

Dask imports this module in each worker process it starts and calls
:func:`dask_setup` with the worker, so the :class:`SandboxPlugin` is there
before the first task, with ``$GLSANDBOX_MAX_SESSIONS`` idle sessions at
most (default 4). Clients then pass ``register_plugin=False``.
"""

from __future__ import annotations

import os
from typing import Any

from .plugin import SandboxPlugin


async def dask_setup(worker: Any) -> None:
    """Called by Dask in the worker process once the worker has started."""
    max_sessions = int(os.environ.get("GLSANDBOX_MAX_SESSIONS", "4") or 4)
    await worker.plugin_add(SandboxPlugin(max_sessions=max_sessions))
