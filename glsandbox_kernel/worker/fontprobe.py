"""matplotlib's font discovery without starting ``fc-list`` where the sandbox starts no program (SANDBOX side).

matplotlib builds its font cache on its first import in a fresh config folder (every sandbox has
its own): ``matplotlib.font_manager._get_fontconfig_fonts`` runs ``fc-list --help`` and
``fc-list --format=...``, trying each ``PATH`` folder, and falls back to no fontconfig list on
``OSError``; the font folders (``/usr/share/fonts``, matplotlib's own) are scanned either way.
Where new programs are denied (STRICT: ``GLSANDBOX_NEW_PROGRAMS=denied`` from the host's
:func:`~glsandbox_kernel.confinement.process.scrubbed_env`), each of those execve calls reached the
supervisor as an exec violation and, in enforcing mode, stopped the analyst's first plot.

:func:`install` (called by :func:`~glsandbox_kernel.worker.loop.serve`) puts a finder on
``sys.meta_path`` that only watches for ``matplotlib.font_manager``; when that is first imported it
adds :func:`refuse_font_probe`, an audit hook that answers exactly that call (program ``fc-list``,
asked by ``_get_fontconfig_fonts`` of ``matplotlib.font_manager``) with the ``PermissionError``
the kernel would have given, before any process is forked. matplotlib handles it as it handles a
host without fontconfig. No program starts either way: STRICT loses nothing, and the audit log
keeps recording every exec that is attempted. The audit hook is added only then, so sandboxes that
never import matplotlib pay no hook on their audit events.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

#: set by the host in the worker's environment: ``denied`` where no new program may start
ENV = "GLSANDBOX_NEW_PROGRAMS"
PROGRAM = "fc-list"
MODULE = "matplotlib.font_manager"
FUNCTION = "_get_fontconfig_fonts"
#: frames between here and matplotlib's function (the hooks, subprocess.Popen, check_output, run)
_MAX_DEPTH = 12


def popen_program(args: tuple[Any, ...]) -> str:
    """The program a ``subprocess.Popen`` audit event starts (its ``executable``, else ``args[0]``; ``""`` if none)."""
    exe = args[0] if args else None
    if exe is None and len(args) > 1:
        argv = args[1]
        if isinstance(argv, (str, bytes)):
            exe = argv
        else:
            argv = list(argv or [""])
            exe = argv[0] if argv else ""
    try:
        return os.fsdecode(exe) if exe is not None else ""
    except TypeError:
        return ""


def is_font_probe(program: str) -> bool:
    """Whether ``program`` (a path or a name) is matplotlib's ``fc-list``, asked by its font manager.

    Also asked by the gVisor bootstrap's exec reporter (:mod:`.bootstrap`), which runs first.
    """
    return os.path.basename(program) == PROGRAM and _asked_by_font_manager()


def _asked_by_font_manager() -> bool:
    frame = sys._getframe(2)
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return False
        if frame.f_code.co_name == FUNCTION and frame.f_globals.get("__name__") == MODULE:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def refuse_font_probe(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: refuse matplotlib's ``fc-list`` before the fork, as the kernel would (EPERM)."""
    if event != "subprocess.Popen" or not is_font_probe(popen_program(args)):
        return
    raise PermissionError(errno.EPERM, "the sandbox starts no new programs (matplotlib scans the font folders)")


class _FontManagerFinder:
    """A meta path finder that finds nothing: it adds the audit hook when matplotlib's font manager loads."""

    hooked = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == MODULE and not self.hooked:
            self.hooked = True  # stays on sys.meta_path: removing it while the import system iterates skips one
            sys.addaudithook(refuse_font_probe)


def install(environ: Any = os.environ) -> bool:
    """Watch for matplotlib's font manager when the host denied new programs; True when installed."""
    if environ.get(ENV) != "denied" or MODULE in sys.modules:
        return False
    sys.meta_path.insert(0, _FontManagerFinder())
    return True
