"""HOST side: keep folders a sandbox may write off the host kernel's import path.

The magic runs inside an ordinary IPython kernel, whose ``sys.path`` starts
with its working directory (``''``, or its absolute path under ``python -m``).
That folder is the magic's default project, writable at LENIENT: a cell
could plant ``pandas.py`` (or ``ipykernel_launcher.py``, which the next
``python -m ipykernel_launcher`` in that folder runs) and the host would run
it outside every control. So a writable project that holds the kernel's
working directory (now, or when the magic was loaded), one of its
``sys.path`` entries, a folder an import finder maps a package to (an
editable install) or an imported module's folder is shown read-only
(its ``sandbox-output/`` stays writable), and any other entry a sandbox may
write is taken off ``sys.path``. Called by :class:`.sessions.NamedSession`
(when a session is made) and ``SandboxMagics._cell`` (before each cell).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys

from ..config import OSSandboxConfig
from ..project import environment_paths, writable_roots


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


#: the working directory when the magic was loaded: where a stock kernel restarts
#: (``python -m ipykernel_launcher`` finds a planted ``ipykernel_launcher.py`` there first),
#: even after the notebook's ``%cd``
START_CWD = os.path.realpath(os.getcwd())


def _import_folders() -> list[tuple[str, str]]:
    """``(entry, real folder)`` of every ``sys.path`` entry outside the environment (shown read-only)."""
    shown = [os.path.realpath(p) for p in environment_paths()]
    out = []
    for entry in sys.path:
        if isinstance(entry, str):
            real = os.path.realpath(entry or os.curdir)
            if not any(_under(real, s) for s in shown):
                out.append((entry, real))
    return out


def _finder_folders() -> list[str]:
    """Folders the host imports from other than through ``sys.path``: meta-path finders' maps
    (setuptools' editable finder: ``MAPPING`` of package to folder) and the files of modules
    already imported (a package's siblings are imported from the same folder later)."""
    found: list[str] = []
    for finder in list(sys.meta_path):
        module = sys.modules.get(getattr(finder, "__module__", "") or "")
        for owner in (finder, module):
            mapping = getattr(owner, "MAPPING", None)
            if isinstance(mapping, dict):
                found += [v for v in mapping.values() if isinstance(v, str)]
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            found.append(os.path.dirname(file))
    return [os.path.realpath(f) for f in found]


def guard_project(config: OSSandboxConfig) -> tuple[OSSandboxConfig, str | None]:
    """``config`` with a writable project made read-only when this kernel imports from it; and the notice."""
    project = config.filesystem.project_dir
    if project is None or config.project_access != "write":
        return config, None
    real = os.path.realpath(project)
    starts = (os.path.realpath(os.getcwd()), START_CWD)
    shown = [os.path.realpath(p) for p in environment_paths()]
    feeds = [e for e, r in _import_folders() if _under(r, real)]
    feeds += [f for f in _finder_folders() if _under(f, real) and not any(_under(f, s) for s in shown)]
    if not feeds and not any(_under(here, real) for here in starts):
        return config, None
    fs = dataclasses.replace(config.filesystem, project_access="read", project_writable=False)
    return config.replace(filesystem=fs), (
        f"glsandbox: the project folder {real} is shown read-only (cells write to its "
        f"{config.filesystem.output_dir or 'output'} folder): this kernel imports Python code from it "
        "(its working directory, sys.path or an import finder), so a module a sandboxed cell wrote there would run "
        "outside the sandbox. Pass --project with another folder, or use the glsandbox kernel, to let "
        "cells write the project."
    )


def drop_writable_from_path(config: OSSandboxConfig) -> str | None:
    """Take off ``sys.path`` what the sandbox of ``config`` may write; the notice to print, or None."""
    roots = writable_roots(config)
    if not roots:
        return None
    unsafe = [e for e, r in _import_folders() if any(_under(r, root) for root in roots)]
    if not unsafe:
        return None
    sys.path[:] = [e for e in sys.path if e not in unsafe]
    importlib.invalidate_caches()
    shown = ", ".join(repr(e) if e else "'' (the working directory)" for e in unsafe)
    return (
        f"glsandbox: removed {shown} from this kernel's sys.path: sandboxed cells may write there, and a "
        "module they write must not run in this kernel (modules already imported are unaffected)."
    )
