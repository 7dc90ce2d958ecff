"""Outside review (7th): what the ``test_outside6_*`` reproducers share (no tests here).

``write_notebook(path, *cells)`` (from ``test_outside5_common``): a glsandbox-kernel notebook of code cells.
``run_with_config(tmp_path, project, config, code)``: start the installed kernelspec
(``kernel_spec()``, what ``glsandbox install`` writes) in ``project`` with ``config`` as
``glsandbox_kernel_config.json`` in its ``$JUPYTER_CONFIG_DIR``, run ``code``, return its text.
``data_project(tmp_path)``: a read-only project with one data file, and an audit log path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from glsandbox_kernel.kernel.install import kernel_spec

from .test_outside5_common import folders, need, write_notebook
from .test_outside5_kernel_cwd_import import _run

__all__ = ["LIST_CWD", "data_project", "run_with_config", "write_notebook"]

#: the cell of run_with_config: what the working directory (the project) shows
LIST_CWD = "import os\nprint('seen', sorted(os.listdir('.')))"


def data_project(tmp_path: Path) -> tuple[Path, Path]:
    """``(project, audit log path)``: a read-only project holding ``data.csv`` (skips without namespace)."""
    need("namespace")
    project, _outside = folders(tmp_path, writable=False)
    (project / "data.csv").write_text("a,b\n1,2\n")
    return project, tmp_path / "audit.jsonl"


def run_with_config(tmp_path: Path, project: Path, config: dict[str, object], code: str = LIST_CWD) -> str:
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    (config_dir / "glsandbox_kernel_config.json").write_text(json.dumps(config))
    spec_dir = tmp_path / "kernels" / "glsandbox-a6"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(kernel_spec()))
    km = KernelManager(
        kernel_name="glsandbox-a6", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    )
    km.start_kernel(cwd=str(project), env={**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir)})
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        said = _run(kc, code)
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    return said
