"""Runs INSIDE the sandbox: the helpers ``%%sandbox --in/--out`` call in the worker.

The magic sends these functions by reference (cloudpickle pickles an
importable module-level function as its name), so the worker imports this
module and runs them against its own IPython shell's namespace. They are
untrusted code like everything else in the worker (a cell can replace them):
what they return crosses the boundary only through the restricted codec, and
the host decides alone which names it writes (:func:`glsandbox_kernel.magics.magic.accept_out`).
"""

from __future__ import annotations

from typing import Any


def _sandbox_user_ns() -> dict[str, Any]:
    """SANDBOX side: the worker shell's user namespace (the shell must be running)."""
    from IPython.core.interactiveshell import InteractiveShell

    if not InteractiveShell.initialized():
        raise RuntimeError("the sandbox's IPython shell is not running")
    ns: dict[str, Any] = InteractiveShell.instance().user_ns
    return ns


def sandbox_side_set_names(encoded: dict[str, bytes]) -> None:
    """SANDBOX side: bind the ``--in`` values, each encoded by the host with the restricted codec."""
    from ..codec import decode

    _sandbox_user_ns().update({name: decode(blob) for name, blob in encoded.items()})


def sandbox_side_get_names(names: list[str]) -> dict[str, Any]:
    """SANDBOX side: the values of ``names`` for ``--out`` (NameError names the missing one)."""
    ns = _sandbox_user_ns()
    for name in names:
        if name not in ns:
            raise NameError(f"name {name!r} is not defined in the sandbox (asked for by --out)")
    return {name: ns[name] for name in names}
