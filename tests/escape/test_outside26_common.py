"""Outside review 26: what the ``test_outside26_*`` reproducers share (no tests here).

``glsandbox_run(tmp_path, cells, *args)``: an honest ``glsandbox run`` (host side, this checkout) of a notebook of
code ``cells``; returns the written notebook's path. ``signed_run(base, cells, *args)``: the same signed with a
fresh Ed25519 key (``{"dir", "pub", "out"}``). ``magic_untouched(tmp_path, body)``: the untouched,
nbclient-executed notebook of one ``%%sandbox strict`` cell in a stock ``python3`` kernel, verified.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from .test_outside25a_common import need


def glsandbox_run(tmp_path: Path, cells: tuple[str, ...], *args: str) -> Path:
    """The notebook ``glsandbox run [args]`` wrote for ``cells`` (asserts it was written)."""
    nbformat = pytest.importorskip("nbformat")
    need("namespace")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.extend(nbformat.v4.new_code_cell(c) for c in cells)
    src = tmp_path / "emissions.ipynb"
    nbformat.write(nb, str(src))
    out = tmp_path / "emissions.glsandbox.ipynb"
    ran = glsandbox_cli("run", str(src), "-o", str(out), *args)
    assert out.exists(), ran.stdout + ran.stderr
    return out


def signed_run(base: Path, cells: tuple[str, ...], *args: str) -> dict[str, Any]:
    """``glsandbox run --sign-key`` of ``cells`` in ``base`` with a key made there: dir, public key, notebook."""
    key = base / "signing.key"
    assert glsandbox_cli("keygen", str(key)).returncode == 0
    out = glsandbox_run(base, cells, "--sign-key", str(key), *args)
    return {"dir": base, "pub": f"{key}.pub", "out": out}


def magic_untouched(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """``glsandbox audit verify`` of the untouched notebook of ``%%sandbox strict`` + ``body`` (stock python3)."""
    from .test_outside15_common import executed, verify

    nb = executed(tmp_path, "python3", "%load_ext glsandbox_kernel", f"%%sandbox strict\n{body}")
    return verify(nb, tmp_path, name="untouched.ipynb")
