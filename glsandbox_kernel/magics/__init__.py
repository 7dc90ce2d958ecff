"""The ``%%sandbox`` / ``%sandbox`` IPython magics (host side).

``%load_ext glsandbox_kernel`` (or ``glsandbox_kernel.magics``) registers
:class:`~glsandbox_kernel.magics.magic.SandboxMagics` in any IPython kernel;
``%unload_ext`` closes the sessions it started. IPython is imported only
when the extension is loaded: the worker imports
:mod:`glsandbox_kernel.magics.sandbox_side` without it.
"""

from __future__ import annotations

from typing import Any

_LOADED: dict[int, Any] = {}


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext``: register the magics once per shell."""
    if id(ipython) in _LOADED:
        return
    from .magic import SandboxMagics

    magics = SandboxMagics(ipython)
    ipython.register_magics(magics)
    _LOADED[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext``: close every session the magic started."""
    magics = _LOADED.pop(id(ipython), None)
    if magics is None:
        return
    magics.close()
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("sandbox", None)


def __getattr__(name: str) -> Any:
    if name == "SandboxMagics":
        from .magic import SandboxMagics

        return SandboxMagics
    if name == "SandboxResult":
        from .display import SandboxResult

        return SandboxResult
    if name == "SandboxCellError":
        from ..exceptions import SandboxCellError

        return SandboxCellError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SandboxCellError", "SandboxMagics", "SandboxResult", "load_ipython_extension", "unload_ipython_extension"]
