"""Find backends by isolation type through the entry-point group (host side).

Every backend, our own included, is registered under the entry-point group
``glsandbox_kernel.backends`` (name = the IsolationType value); there is no
second list. The lookup lives here, in one small function that tests can
replace (:func:`set_backend_loader`). A backend that fails to import is
reported (:func:`broken_backends`), never silently dropped. No
``if backend == ...`` chains anywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import entry_points

from ..config import IsolationType
from ..exceptions import BackendUnavailableError
from .base import SandboxBackend

ENTRY_POINT_GROUP = "glsandbox_kernel.backends"


@functools.lru_cache(maxsize=1)
def _entry_points() -> tuple[dict[str, type[SandboxBackend]], dict[str, str]]:
    """(backends by name, name -> why it could not be loaded), from the entry-point group.

    Our own backends are registered there too (pyproject.toml; installed
    even for editable installs). A backend whose import fails is kept with
    its error, never dropped: ``glsandbox doctor`` shows it, and asking for
    it raises :class:`BackendUnavailableError` with that error.
    """
    found: dict[str, type[SandboxBackend]] = {}
    broken: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - recorded and reported, not swallowed
            broken[ep.name] = f"import of {ep.value} failed: {type(exc).__name__}: {exc}"
            continue
        if isinstance(cls, type) and issubclass(cls, SandboxBackend):
            found[ep.name] = cls
        else:
            broken[ep.name] = f"{ep.value} is not a SandboxBackend subclass"
    return found, broken


def _default_loader() -> dict[str, type[SandboxBackend]]:
    return _entry_points()[0]


_loader: Callable[[], dict[str, type[SandboxBackend]]] = _default_loader


def set_backend_loader(loader: Callable[[], dict[str, type[SandboxBackend]]] | None) -> None:
    """Replace the lookup (tests, embedding); None restores the entry-point lookup."""
    global _loader
    _loader = loader or _default_loader


def backends() -> dict[str, type[SandboxBackend]]:
    """All registered backends by name (those that loaded)."""
    return dict(_loader())


def broken_backends() -> dict[str, str]:
    """Registered backends that could not be loaded: name -> the error (doctor shows them)."""
    if _loader is not _default_loader:
        return {}
    return dict(_entry_points()[1])


def get_backend(isolation: IsolationType | str) -> type[SandboxBackend]:
    """The backend class for ``isolation``; BackendUnavailableError if none is registered."""
    name = isolation.value if isinstance(isolation, IsolationType) else str(isolation)
    cls = _loader().get(name)
    if cls is None and name in broken_backends():
        raise BackendUnavailableError(name, broken_backends()[name], "see `glsandbox doctor`")
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
