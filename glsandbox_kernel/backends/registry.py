"""Find backends by isolation type through the entry-point group (host side).

Every backend, our own included, is registered under the entry-point group
``glsandbox_kernel.backends`` (name = the IsolationType value). The lookup
lives here, in one small function that tests can replace
(:func:`set_backend_loader`). No ``if backend == ...`` chains anywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import entry_points

from ..config import IsolationType
from ..exceptions import BackendUnavailableError
from .base import SandboxBackend

ENTRY_POINT_GROUP = "glsandbox_kernel.backends"

# Fallback table used when the distribution metadata is not installed
# (running from a source tree); mirrors pyproject.toml's entry points.
_BUILTIN = {
    "basic": "glsandbox_kernel.backends.basic:BasicBackend",
    "namespace": "glsandbox_kernel.backends.namespace:NamespaceBackend",
    "chroot": "glsandbox_kernel.backends.chroot:ChrootBackend",
    "container": "glsandbox_kernel.backends.container:ContainerBackend",
    "gvisor": "glsandbox_kernel.backends.gvisor:GVisorBackend",
    "vm": "glsandbox_kernel.backends.vm:VMBackend",
}


def _load_target(target: str) -> type[SandboxBackend] | None:
    module_name, _, attr = target.partition(":")
    try:
        module = __import__(module_name, fromlist=[attr])
    except ImportError:
        return None
    cls = getattr(module, attr, None)
    return cls if isinstance(cls, type) and issubclass(cls, SandboxBackend) else None


@functools.lru_cache(maxsize=1)
def _default_loader() -> dict[str, type[SandboxBackend]]:
    found: dict[str, type[SandboxBackend]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, SandboxBackend):
            found[ep.name] = cls
    for name, target in _BUILTIN.items():
        if name not in found:
            cls = _load_target(target)
            if cls is not None:
                found[name] = cls
    return found


_loader: Callable[[], dict[str, type[SandboxBackend]]] = _default_loader


def set_backend_loader(loader: Callable[[], dict[str, type[SandboxBackend]]] | None) -> None:
    """Replace the lookup (tests, embedding); None restores the entry-point lookup."""
    global _loader
    _loader = loader or _default_loader


def backends() -> dict[str, type[SandboxBackend]]:
    """All registered backends by name."""
    return dict(_loader())


def get_backend(isolation: IsolationType | str) -> type[SandboxBackend]:
    """The backend class for ``isolation``; BackendUnavailableError if none is registered."""
    name = isolation.value if isinstance(isolation, IsolationType) else str(isolation)
    cls = _loader().get(name)
    if cls is None:
        raise BackendUnavailableError(
            name,
            "no backend is registered under that name",
            f"registered: {', '.join(sorted(_loader())) or 'none'}",
        )
    return cls


def default_backend() -> type[SandboxBackend]:
    """The strongest available backend that needs no daemon."""
    candidates = sorted(
        (cls for cls in _loader().values() if not cls.needs_daemon),
        key=lambda c: c.strength,
        reverse=True,
    )
    for cls in candidates:
        ok, _reason = cls.available()
        if ok:
            return cls
    raise BackendUnavailableError("default", "no backend without a daemon can run here")
