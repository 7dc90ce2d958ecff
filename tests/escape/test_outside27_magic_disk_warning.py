"""Outside review 27: under the ``%%sandbox`` magic, the disk guard's log line is an output no record lists.

Severity: medium (any sandboxed cell can make an honest, untouched notebook fail ``audit verify`` as if
tampered: the class review 26 fixed for the magic's "dropped an output frame" warning).

Attack: a ``%%sandbox`` cell (stock ``python3`` kernel, ``--project`` with ``sandbox-output/``) writes past
the disk quota (MODERATE's default 256 MiB) into ``sandbox-output/``. Where: ``DiskGuard._check``
(disk_guard.py) calls ``log.warning("sandbox over its disk quota (%s): killing it", ...)`` in the host
(kernel) process; the magic's kernel configures no handler for ``glsandbox.*``, so Python's
``logging.lastResort`` writes it to ``sys.stderr``, which ipykernel publishes as a ``stream`` output of
the running cell. The cell's audit record (sealed from what the session relayed) does not list it.

How judged, from the host: the notebook executed by nbclient (what papermill does), saved untouched, then
``glsandbox audit verify`` on it must exit 0. Checked first that the cell did fail with the disk-quota error.

Suggested fix: never let host-side library logging reach the kernel's stderr in the magic: give the
``glsandbox`` logger a ``NullHandler`` (the library convention) and ``propagate`` only where the
application configured logging, or say the kill through the cell's recorded notice only (as the magic's
dropped-frame path now does); audit the other ``log.warning`` calls a sandbox can trigger
(``metrics.py``'s "cannot measure the sandbox's socket memory; killing it", ``session_violations``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..conftest import NOBODY
from .test_outside5_common import need
from .test_outside15_common import verify

pytestmark = pytest.mark.timeout(300)

FILL = """
import os
data = b'x' * (4 << 20)
for i in range(80):  # 320 MiB, past the default 256 MiB quota
    with open(f'{out}/part-{i:03d}.bin', 'wb') as fh:
        fh.write(data)
"""


def test_the_disk_guards_kill_leaves_an_untouched_magic_notebook_verifiable(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    need("namespace")
    os.chmod(tmp_path, 0o755)
    project = tmp_path / "project"
    out = project / "sandbox-output"
    out.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(project, NOBODY, NOBODY)
        os.chown(out, NOBODY, NOBODY)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell("%load_ext glsandbox_kernel"))
    cell = f"%%sandbox moderate --isolation namespace --project {project}\nout = {str(out)!r}\n{FILL}"
    nb.cells.append(nbformat.v4.new_code_cell(cell))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=300, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    saved = json.loads(nbformat.writes(nb))
    outputs = saved["cells"][1]["outputs"]
    texts = json.dumps(outputs)
    assert "disk quota" in texts, f"set-up: the cell did not fail on the disk quota: {texts[:2000]}"
    verified = verify(saved, tmp_path, name="untouched.ipynb")
    streams = [o.get("text") for o in outputs if o.get("output_type") == "stream"]
    assert verified.returncode == 0, (
        "an untouched magic notebook whose sandbox the disk guard killed fails verify; the cell's streams: "
        f"{streams!r}\n{verified.stdout}{verified.stderr}"
    )
