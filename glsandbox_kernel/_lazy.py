"""Lazy public names for a package: import the defining module on first attribute access (host side).

Who calls: ``glsandbox_kernel/__init__.py`` and ``glsandbox_kernel/distributed/__init__.py``
build their module ``__getattr__``/``__dir__`` with :func:`lazy_exports`, so that importing
the package imports nothing heavy (no Docker, seccomp, widget or Dask library).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, table: Mapping[str, str], namespace: dict[str, Any], *, extras: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``table`` maps a name to its relative module.

    A loaded name is kept in ``namespace`` (the package's globals). ``extras``
    maps a missing third-party module (``ModuleNotFoundError.name``) to the
    install hint of the ``ImportError`` raised instead.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(module, package), name)
        except ModuleNotFoundError as exc:
            hint = (extras or {}).get(str(exc.name))
            if hint is None:
                raise
            raise ImportError(f"{package}.{name} needs {exc.name}: {hint}") from exc
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
