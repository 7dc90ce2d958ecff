"""The command line of a host Python process started in a folder the sandbox may write (host side).

``python -m module`` puts its working directory first on ``sys.path``,
ahead of site-packages and the standard library. The kernel runs in the
notebook's folder, which a LENIENT sandbox can write: a ``psutil.py`` or a
``glsandbox_kernel/`` planted there would be imported by the trusted host
process at its next start. :func:`module_argv` starts the module with that
entry taken off first (``-P`` does the same, but only from Python 3.11, and
the kernelspec may name another interpreter). Who calls: the kernelspecs
(:mod:`.kernel.install`, ``glsandbox run``), the Dask plugin's doctor.
"""

from __future__ import annotations

# sys is built in: nothing is imported from the working directory before the entry goes.
_BOOTSTRAP = (
    "import sys\n"
    "if not sys.flags.safe_path: del sys.path[0]\n"
    "import runpy\n"
    "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
)


def module_argv(python: str, module: str) -> list[str]:
    """``[python, "-c", ...]`` running ``module`` as ``__main__`` without the working directory on sys.path."""
    return [python, "-c", _BOOTSTRAP.format(module=module)]
