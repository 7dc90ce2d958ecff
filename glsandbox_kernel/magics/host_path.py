"""HOST side: keep folders a sandbox may write off the host kernel's import path.

The magic runs inside an ordinary IPython kernel, whose ``sys.path`` starts
with the working directory (``''``, or its absolute path under ``python -m``).
That is the magic's default project folder, writable at LENIENT: a cell could
plant ``pandas.py`` there and the next host ``import pandas`` would run it
outside every control. Called by ``SandboxMagics._cell`` before each cell.
"""

from __future__ import annotations

import importlib
import os
import sys

from ..project import environment_paths, writable_roots


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def unsafe_entries(config: object, path: list[str] | None = None) -> list[str]:
    """The entries of ``path`` (default ``sys.path``) that lie in a folder ``config`` lets the sandbox write.

    The Python environment is shown read-only even inside a writable folder, so its entries are safe.
    """
    roots = writable_roots(config)  # type: ignore[arg-type]
    if not roots:
        return []
    shown = [os.path.realpath(p) for p in environment_paths()]
    found = []
    for entry in sys.path if path is None else path:
        if not isinstance(entry, str):
            continue
        real = os.path.realpath(entry or os.curdir)
        if any(_under(real, r) for r in roots) and not any(_under(real, s) for s in shown):
            found.append(entry)
    return found


def drop_writable_from_path(config: object) -> str | None:
    """Remove from ``sys.path`` what the sandbox of ``config`` may write; the notice to print, or None."""
    unsafe = unsafe_entries(config)
    if not unsafe:
        return None
    sys.path[:] = [e for e in sys.path if e not in unsafe]
    importlib.invalidate_caches()
    shown = ", ".join(repr(e) if e else "'' (the working directory)" for e in unsafe)
    return (
        f"glsandbox: removed {shown} from this kernel's sys.path: sandboxed cells may write there, and a "
        "module they write must not run in this kernel. Modules already imported are unaffected; import "
        "your own modules from there at a read-only level, or use the glsandbox kernel (it never imports from its working directory)."
    )
