"""The ``glsandbox`` Jupyter kernel (host side): protocol relay to a sandboxed worker.

``SandboxKernel`` lives in :mod:`glsandbox_kernel.kernel.kernel` and is
imported lazily (it pulls in ipykernel); ``glsandbox install`` needs only
:mod:`glsandbox_kernel.kernel.install`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SandboxKernel"]


def __getattr__(name: str) -> Any:
    if name == "SandboxKernel":
        from .kernel import SandboxKernel

        return SandboxKernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
