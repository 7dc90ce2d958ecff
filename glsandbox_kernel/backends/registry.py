"""Find backends by isolation type through the entry-point group (host side).

Every backend, our own included, is registered under the entry-point group
``glsandbox_kernel.backends`` (name = the IsolationType value); there is no
second list. The lookup lives here, in one small function that tests can
replace (:func:`set_backend_loader`). A backend that fails to import is
reported (:func:`broken_backends`), never silently dropped. No
``if backend == ...`` chains anywhere.

:func:`get_backend` imports only the backend asked for, and looks in our own
distribution's entry points before it scans every installed distribution's
(a kernel's start needs one backend; the scan and the other backends' imports
cost it about a second of CPU under load). :func:`backends`,
:func:`broken_backends` and :func:`default_backend` load them all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import IsolationType
from ..exceptions import BackendUnavailableError
from .base import SandboxBackend

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "glsandbox_kernel.backends"
#: the distribution that registers our own backends (pyproject.toml ``[project] name``)
DISTRIBUTION = "glsandbox-kernel"

#: name -> the loaded class, or why it could not be loaded (each entry point is loaded once)
_loaded: dict[str, type[SandboxBackend] | str] = {}


@functools.lru_cache(maxsize=1)
def _own_entry_points() -> dict[str, EntryPoint]:
    """Our distribution's entry points of the group, read from its metadata alone ({} if not installed)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        return {}
    return {ep.name: ep for ep in dist.entry_points.select(group=ENTRY_POINT_GROUP)}


@functools.lru_cache(maxsize=1)
def _all_entry_points() -> dict[str, EntryPoint]:
    """Every installed distribution's entry points of the group; ours win for the names they register."""
    from importlib.metadata import entry_points

    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return {**found, **_own_entry_points()}


def _load(ep: EntryPoint) -> type[SandboxBackend] | str:
    """The class ``ep`` names, or why it is not one; loaded once.

    Our own backends are registered there too (pyproject.toml; installed
    even for editable installs). A backend whose import fails is kept with
    its error, never dropped: ``glsandbox doctor`` shows it, and asking for
    it raises :class:`BackendUnavailableError` with that error.
    """
    if ep.name not in _loaded:
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - recorded and reported, not swallowed
            _loaded[ep.name] = f"import of {ep.value} failed: {type(exc).__name__}: {exc}"
        else:
            ok = isinstance(cls, type) and issubclass(cls, SandboxBackend)
            _loaded[ep.name] = cls if ok else f"{ep.value} is not a SandboxBackend subclass"
    return _loaded[ep.name]


def _entry_points() -> tuple[dict[str, type[SandboxBackend]], dict[str, str]]:
    """(backends by name, name -> why it could not be loaded): every entry point of the group, loaded."""
    found: dict[str, type[SandboxBackend]] = {}
    broken: dict[str, str] = {}
    for ep in _all_entry_points().values():
        result = _load(ep)
        if isinstance(result, str):
            broken[ep.name] = result
        else:
            found[ep.name] = result
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


def _lookup(name: str) -> type[SandboxBackend] | str | None:
    """The backend ``name``, the error that kept it from loading, or None if none is registered."""
    if _loader is not _default_loader:
        return _loader().get(name)
    ep = _own_entry_points().get(name) or _all_entry_points().get(name)
    return None if ep is None else _load(ep)


def get_backend(isolation: IsolationType | str) -> type[SandboxBackend]:
    """The backend class for ``isolation``; BackendUnavailableError if none is registered."""
    name = isolation.value if isinstance(isolation, IsolationType) else str(isolation)
    found = _lookup(name)
    if isinstance(found, str):
        raise BackendUnavailableError(name, found, "see `glsandbox doctor`")
    if found is None:
        raise BackendUnavailableError(
            name,
            "no backend is registered under that name",
            f"registered: {', '.join(sorted(_loader())) or 'none'}",
        )
    return found


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
