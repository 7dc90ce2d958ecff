"""The Python environment the sandbox is shown (HOST side).

Who calls: :mod:`.project` (:func:`~.project.environment_paths`, the masks of
:func:`~.project.project_layout`), hence the mount planner, BASIC's Landlock
rules and :mod:`.pickling`. Computed once per process from the interpreter
itself: never ``sys.path`` as it happens to be, the working directory or
``PYTHONPATH``.

Shown whole, read-only: the installation prefixes, the interpreter's
directory, this package's own folder (not its parent: a source checkout
stays hidden) and package trees a site-packages ``.pth`` file names
(another ``site-packages``/``dist-packages``). Any other folder a ``.pth``
line names is a user's folder: an editable install's checkout (``pip
install -e`` with hatchling's or Poetry's default, setuptools' compat mode,
``setup.py develop``), with its ``.env``, ``.git`` and keys. Of it only what
``import`` finds there is shown: packages and modules by their names and
distribution metadata (``*.dist-info``, ``*.egg-info``), each scanned for
masked names at every start like the project folder; the folder itself is
only listable (BASIC) or a bare mount point (NAMESPACE), so the ``.pth``
entry on the sandbox's ``sys.path`` still imports the package.
"""

from __future__ import annotations

import importlib.machinery
import os
import site
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass

#: folder names of package trees: a ``.pth`` line naming one shows it whole
PACKAGE_TREES = ("site-packages", "dist-packages")
#: credential files an environment prefix may hold (pip's per-venv config, conda's channel tokens)
PREFIX_CREDENTIALS = ("pip.conf", "pip.ini", ".condarc", "condarc", "condarc.d", ".netrc", ".pypirc")


@dataclass(frozen=True)
class PythonEnvironment:
    """What of this interpreter's environment the sandbox sees (see the module docstring).

    ``shown``: folders and files shown whole at their own paths, outermost
    first. ``editable``: those of them taken out of a user's folder (scanned
    for masked names at each start). ``listed``: the user's folders they
    came from (listable, never readable). ``trusted``: package trees, never
    scanned (no user secrets, and large). ``prefixes``: the environment's
    prefixes outside system folders, whose top level may hold credentials.
    """

    shown: tuple[str, ...]
    editable: tuple[str, ...]
    listed: tuple[str, ...]
    trusted: tuple[str, ...]
    prefixes: tuple[str, ...]


def compute_environment(accept: Callable[[str], bool]) -> PythonEnvironment:
    """HOST side: this process's :class:`PythonEnvironment`; ``accept``: whether a ``.pth``
    folder may be shown at all (:func:`.project.project_dir_problem`; cached there)."""
    pkg = os.path.dirname(os.path.realpath(__file__))
    prefixes = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix]
    paths = [*prefixes, os.path.dirname(os.path.realpath(sys.executable)), pkg]
    trusted = [pkg, *_site_dirs(), *(sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib"))]
    editable: list[str] = []
    listed: list[str] = []
    for sitedir in _site_dirs():
        for d in _pth_dirs(sitedir, own_parent=os.path.dirname(pkg), accept=accept):
            if os.path.basename(d) in PACKAGE_TREES:
                paths.append(d)
                trusted.append(d)
            else:
                listed.append(d)
                editable += _importable(d)
    shown: list[str] = []
    for p in sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)} | set(editable), key=len):
        if not any(_under(p, q) for q in shown):
            shown.append(p)
    return PythonEnvironment(
        shown=tuple(shown),
        editable=tuple(e for e in editable if e in shown),
        listed=tuple(d for d in dict.fromkeys(listed) if not any(_under(d, q) for q in shown)),
        trusted=tuple(sorted({os.path.realpath(t) for t in trusted if t})),
        prefixes=tuple(sorted({os.path.realpath(p) for p in prefixes if p})),
    )


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _importable(folder: str) -> list[str]:
    """The entries of ``folder`` that ``import`` (or :mod:`importlib.metadata`) can use.

    Packages (folders named as identifiers: regular and namespace packages),
    modules (an identifier and an import suffix: ``.py``, ``.pyc``, extension
    modules) and distribution metadata. Never a symlink (it may lead
    anywhere); one with a masked name is masked (:func:`.project.environment_masks`).
    """
    suffixes = tuple(importlib.machinery.all_suffixes())
    out: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        name = entry.name
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            ok = name.isidentifier() or name.endswith((".dist-info", ".egg-info"))
        else:
            stem, _, rest = name.partition(".")
            ok = entry.is_file(follow_symlinks=False) and stem.isidentifier() and "." + rest in suffixes
        if ok:
            out.append(entry.path)
    return out


def _site_dirs() -> list[str]:
    try:
        return [d for d in site.getsitepackages() if os.path.isdir(d)]
    except AttributeError:  # some embedded interpreters
        return []


def _pth_dirs(sitedir: str, *, own_parent: str, accept: Callable[[str], bool]) -> list[str]:
    """Folders named by the ``.pth`` files of ``sitedir`` (as :mod:`site` reads them)."""
    out: list[str] = []
    try:
        names = sorted(n for n in os.listdir(sitedir) if n.endswith(".pth"))
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(sitedir, name), encoding="utf-8", errors="replace") as fh:
                lines = fh.read(64 * 1024).splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith(("#", "import ", "import\t")):
                continue
            d = os.path.realpath(os.path.join(sitedir, line))
            # The checkout this package is imported from: only the package folder is shown.
            if os.path.isdir(d) and d != own_parent and accept(d):
                out.append(d)
    return out
