"""Outside review (6th): what the ``test_outside5_*`` reproducers share (no tests here).

``folders(tmp_path)`` makes the two places every reproducer judges from the host: a project
folder the sandbox may write (owned by uid 65534 as root, since a root sandbox writes as the
project folder's non-root owner) and a 0700 host-only folder the sandbox never sees.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel.backends.registry import backends

from ..conftest import NOBODY


def need(*names: str) -> None:
    """Skip the calling test unless every named backend runs here."""
    for name in names:
        ok, why = backends()[name].available()
        if not ok:
            pytest.skip(f"{name}: {why}")


def folders(tmp_path: Path, project: str = "project", *, writable: bool = True) -> tuple[Path, Path]:
    """``(project, host_only)`` below ``tmp_path``; ``writable``: the sandbox can write the project."""
    os.chmod(tmp_path, 0o755)
    host_only = tmp_path / "host-only"
    host_only.mkdir(mode=0o700)
    folder = tmp_path / project
    folder.mkdir()
    if writable and os.geteuid() == 0:
        os.chown(folder, NOBODY, NOBODY)
    return folder, host_only


def namespace_project(tmp_path: Path) -> tuple[Path, Any]:
    """``(project, config)``: a MODERATE namespace config showing ``folders(tmp_path)``'s project (read)."""
    from glsandbox_kernel import FilesystemConfig, IsolationType, create_config_by_level

    need("namespace")
    project, _host_only = folders(tmp_path)
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    return project, create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE, filesystem=fs)


def write_notebook(path: Path, *cells: str) -> None:
    """A glsandbox-kernel notebook of code cells at ``path``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.extend(nbformat.v4.new_code_cell(cell) for cell in cells)
    nbformat.write(nb, str(path))


def signed_run(tmp_path: Path, write: Callable[[Path], None]) -> tuple[Path, Path]:
    """``(out.ipynb, key)``: a new Ed25519 key and ``glsandbox run --sign-key`` of the notebook ``write(path)`` made."""
    from ..conftest import glsandbox_cli

    pytest.importorskip("cryptography")
    key = tmp_path / "signing.key"
    made = glsandbox_cli("keygen", str(key))
    assert made.returncode == 0, made.stderr
    write(tmp_path / "nb.ipynb")
    out = tmp_path / "out.ipynb"
    ran = glsandbox_cli("run", str(tmp_path / "nb.ipynb"), "-o", str(out), "--sign-key", str(key))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return out, key


#: The backends that load the project's seccomp filter or OCI profile on this host's kernel,
#: container backends marked (tests of a syscall the policy denies everywhere).
FILTERED_BACKENDS = [
    "basic",
    "namespace",
    pytest.param("container", marks=pytest.mark.container),
    pytest.param("gvisor", marks=pytest.mark.container),
]
