"""Outside review (7th): the host kernel still imports from the notebook's folder when $PYTHONPATH has an empty entry.

Attack: the fix of outside review 6 (``safe_python.module_argv``) deletes
``sys.path[0]`` only -- the ``''`` that ``python -c`` puts there. An empty
entry in ``$PYTHONPATH`` (``PYTHONPATH=:/opt/lib``, what the everyday
``export PYTHONPATH=$PYTHONPATH:/opt/lib`` gives when it was unset, or a
trailing ``:``) is the working directory too, and it stays. The kernel inherits
the Jupyter server's (or ``glsandbox run``'s) environment, and runs in the
notebook's folder, so an untrusted notebook folder that ships ``psutil.py``
gets it imported by the trusted host kernel before any cell runs, at STRICT;
at LENIENT the sandbox itself can plant it for the next start.

Measured here (root, namespace): ``glsandbox run untrusted/nb.ipynb --level
strict`` with ``PYTHONPATH=:`` -- the host kernel (uid 0) ran the folder's
``psutil.py`` (it wrote the marker into a 0700 host folder the sandbox never
sees).

Judged from the host: the marker file does not exist after the run.

Fix (suggested): ``safe_python._BOOTSTRAP``: drop *every* entry of
``sys.path`` that is the working directory (``''``, ``'.'``, a path equal to
``os.getcwd()``) instead of ``sys.path[0]`` only; or start with ``-I``/``-E``
and pass the wanted ``PYTHONPATH`` entries explicitly; the zygote's fixed
``PYTHONPATH`` already does this right.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_outside5_common import folders, need
from .test_outside5_kernel_cwd_import import downloaded_with_psutil

pytestmark = pytest.mark.timeout(300)


def test_an_empty_pythonpath_entry_does_not_put_the_notebook_folder_on_the_host_kernels_path(
    tmp_path: Path,
) -> None:
    from ..conftest import glsandbox_cli

    project, marker = downloaded_with_psutil(tmp_path)
    pythonpath = os.pathsep + os.environ.get("PYTHONPATH", "")  # "export PYTHONPATH=$PYTHONPATH:..." when unset
    res = glsandbox_cli(
        "run",
        str(project / "nb.ipynb"),
        "--level",
        "strict",
        "-o",
        str(tmp_path / "out.ipynb"),
        env={"PYTHONPATH": pythonpath},
    )
    assert not marker.exists(), (
        f"glsandbox run --level strict with PYTHONPATH={pythonpath!r}: the host kernel imported the "
        f"notebook folder's psutil.py: {marker.read_text()!r} (run rc {res.returncode})"
    )


def test_a_sitecustomize_in_the_notebook_folder_never_runs_in_the_host_kernel(tmp_path: Path) -> None:
    """The same entry, earlier: ``site`` imports ``sitecustomize`` at interpreter start, before the
    bootstrap runs a line (``-P`` does not help either), so cleaning ``sys.path`` in the
    bootstrap cannot be the whole fix; the kernel's ``$PYTHONPATH`` must be cleaned (or ignored)."""
    import nbformat

    from ..conftest import glsandbox_cli

    need("namespace")
    project, outside = folders(tmp_path, "downloaded", writable=False)
    marker = outside / "sitecustomize-ran"
    (project / "sitecustomize.py").write_text(
        f"import os\nopen({str(marker)!r}, 'w').write('pid %d uid %d' % (os.getpid(), os.getuid()))\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell("print(6 * 7)"))
    nbformat.write(nb, str(project / "nb.ipynb"))
    pythonpath = os.environ.get("PYTHONPATH", "") + os.pathsep  # a trailing ":" is the cwd too
    res = glsandbox_cli(
        "run", str(project / "nb.ipynb"), "--level", "strict", "-o", str(tmp_path / "out.ipynb"),
        env={"PYTHONPATH": pythonpath},
    )  # fmt: skip
    assert not marker.exists(), (
        f"glsandbox run --level strict with PYTHONPATH={pythonpath!r}: a host process ran the notebook "
        f"folder's sitecustomize.py: {marker.read_text()!r} (run rc {res.returncode})"
    )
