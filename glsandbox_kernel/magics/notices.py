"""HOST side: the magic's notice when the sandbox shows no project folder (the kernel's first-cell notice).

The glsandbox kernel says on its first cell why its sandbox shows no host folder
(:func:`glsandbox_kernel.kernel.options.take_start_notices`). ``%%sandbox`` in a stock kernel
started in ``/``, ``/tmp`` or HOME (papermill starts it in its own working directory) says the
same on the first sandboxed cell that runs there without ``--project``, once per such folder and shell.
Who calls: ``SandboxMagics._cell``, which shows the notice as the cell starts, an output its
record lists.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any


def working_dir() -> str | None:
    """The kernel's working directory (its real path), or None when it is gone."""
    try:
        return os.path.realpath(os.getcwd())
    except OSError:
        return None


#: the folders already named, per IPython shell: ``%reload_ext`` makes a new magic in the same shell
_SAID: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_SAID_LOCK = threading.Lock()


class ProjectNotices:
    """Which working directories were already named as no project folder, in ``shell`` (once per shell,
    whatever magic instance asks: the extension reloaded says nothing twice); without a shell, per instance."""

    def __init__(self, shell: Any = None) -> None:
        self._lock = _SAID_LOCK
        self._said: set[str] = set()
        if shell is not None:
            try:
                with _SAID_LOCK:
                    self._said = _SAID.setdefault(shell, self._said)
            except TypeError:  # a shell that cannot be weakly referenced: this magic's own set
                pass

    def take(self, cwd: str | None) -> str | None:
        """The notice for a cell run in ``cwd`` with no project folder, the first time only; else None."""
        from ..project import project_dir_problem

        problem = project_dir_problem(cwd) if cwd is not None else None
        if cwd is None or problem is None:
            return None
        with self._lock:
            if cwd in self._said:
                return None
            self._said.add(cwd)
        return (
            f"glsandbox: the sandbox shows no host folder: this kernel's working directory cannot be a project "
            f"folder ({problem}). Start the kernel in the project folder (papermill: --cwd FOLDER), %cd there, "
            "or pass --project DIR."
        )
