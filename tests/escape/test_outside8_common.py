"""Outside review (9th): what the magic reproducers share (no tests here).

``magic_kernel(cwd, *cells)`` starts a stock ``python3`` kernel in ``cwd``, loads the magic,
runs the cells in order and returns what each printed; ``plant(project, name, payload)`` is a
LENIENT ``%%sandbox`` cell with ``--project project`` that writes ``payload`` to ``name``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from .test_outside5_kernel_cwd_import import _run


def plant(project: Path, name: str, payload: str) -> str:
    """The LENIENT ``%%sandbox`` cell writing ``payload`` to ``name`` in the project ``project``."""
    return (
        f"%%sandbox lenient --project {project}\nimport os\n"
        f"with open({name!r}, 'w') as fh:\n    fh.write({payload!r})\n"
        f"print('planted', os.path.exists({name!r}))\n"
    )


def magic_kernel(cwd: Path, *cells: str) -> list[str]:
    """What each cell printed, run in order after ``%load_ext glsandbox_kernel`` in a stock kernel in ``cwd``."""
    pytest.importorskip("ipykernel")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), startup_timeout=120)
    try:
        loaded = _run(kc, "%load_ext glsandbox_kernel")
        assert "ERROR" not in loaded, loaded
        return [_run(kc, cell) for cell in cells]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
