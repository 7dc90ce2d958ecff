"""The command line of a host Python process started in a folder the sandbox may write (host side).

``python -m module`` puts its working directory first on ``sys.path``,
ahead of site-packages and the standard library. The kernel runs in the
notebook's folder, which a LENIENT sandbox can write: a ``psutil.py`` or a
``glsandbox_kernel/`` planted there would be imported by the trusted host
process at its next start. :func:`module_argv` starts the module with that
entry taken off first and no ``PYTHON*`` variable read (``-P`` alone would
not stop an empty PYTHONPATH entry, exists only from Python 3.11, and the
kernelspec may name another interpreter). Who calls: the kernelspecs
(:mod:`.kernel.install`, ``glsandbox run``), the Dask plugin's doctor.
"""

from __future__ import annotations

# -E: an empty or relative PYTHONPATH entry ("PYTHONPATH=:/opt/lib", what
# `export PYTHONPATH=$PYTHONPATH:/opt/lib` gives when it was unset) would put the working
# directory back, and before this code runs: `site` imports a sitecustomize.py found there.
# The absolute entries are put back here, the working directory and folders below it never
# (PYTHONPATH=$PWD/src, a src layout: the notebook's folder is the project a LENIENT sandbox
# writes, and a module planted there would run in the next host kernel). sys is built in:
# nothing is imported from the working directory before its entry goes.
_BOOTSTRAP = (
    "import sys\n"
    "del sys.path[0]\n"
    "import os\n"
    "here = os.path.realpath(os.getcwd())\n"
    "sys.path[0:0] = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)\n"
    "                 if os.path.isabs(p) and os.path.realpath(p) != here\n"
    "                 and not os.path.realpath(p).startswith(here.rstrip('/') + '/')]\n"
    "import runpy\n"
    "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
)


def module_argv(python: str, module: str) -> list[str]:
    """``[python, "-E", "-c", ...]`` running ``module`` as ``__main__`` without the working directory
    on sys.path (the other ``PYTHON*`` variables are ignored too; absolute PYTHONPATH entries outside it stay)."""
    return [python, "-E", "-c", _BOOTSTRAP.format(module=module)]
