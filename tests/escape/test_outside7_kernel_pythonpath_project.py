"""Outside review (8th): a LENIENT cell plants a module in a ``$PYTHONPATH`` folder inside the project.

Attack: the analyst's project has a ``src/`` layout and its environment says
``PYTHONPATH=$PWD/src`` (direnv, an IDE's ``.env``, a Makefile; the usual way to
import a project's own package without installing it). The kernel's
bootstrap (``safe_python``, after reviews 6 and 7) keeps every absolute
``PYTHONPATH`` entry that is not the working directory itself, so
``<project>/src`` stays on the *host* kernel's ``sys.path``, ahead of
site-packages. At LENIENT the project is writable by the sandbox: a cell writes
``src/psutil.py`` and the next host kernel start (a restart, the next
``glsandbox run``) imports it as the trusted host process.

Measured here (root, namespace backend): after the LENIENT cell wrote
``src/psutil.py``, the restarted host kernel (uid 0) ran it (the marker in a
0700 host folder the sandbox never sees was written).

Judged from the host: after a restart the marker does not exist.

Fix (suggested): the bootstrap drops every ``PYTHONPATH`` entry at or below a
folder the sandbox may write (the project at LENIENT, the output folder,
``writable_paths``), and says so; or the kernel refuses such a configuration
at start, naming the entry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from glsandbox_kernel.kernel.install import kernel_spec

from ..conftest import NOBODY
from .test_outside5_common import folders, need
from .test_outside5_kernel_cwd_import import PAYLOAD, _run

pytestmark = pytest.mark.timeout(300)
SPEC = "glsandbox-lenient-a8"

PLANT = """
import os
with open("src/psutil.py", "w") as fh:
    fh.write({payload!r})
print("planted", os.path.exists("src/psutil.py"))
"""


def test_a_pythonpath_folder_inside_a_writable_project_never_feeds_the_host_kernel(tmp_path: Path) -> None:
    need("namespace")
    project, outside = folders(tmp_path)
    src = project / "src"
    src.mkdir()
    if os.geteuid() == 0:
        os.chown(src, NOBODY, NOBODY)
    marker = outside / "imported-by-host"
    kernels = tmp_path / "kernels"
    (kernels / SPEC).mkdir(parents=True)
    (kernels / SPEC / "kernel.json").write_text(json.dumps(kernel_spec(level="lenient", isolation="namespace")))
    km = KernelManager(kernel_name=SPEC, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    pythonpath = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    km.start_kernel(cwd=str(project), env={**os.environ, "PYTHONPATH": pythonpath})
    alive = ""
    try:
        for step in ("plant", "restart"):
            kc = km.client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=120)
                if step == "plant":
                    said = _run(kc, PLANT.format(payload=PAYLOAD.format(marker=str(marker))))
                    assert "planted True" in said, said
                else:
                    alive = _run(kc, "print('alive', 6 * 7)")
            finally:
                kc.stop_channels()
            if step == "plant":
                km.restart_kernel(now=True)
    finally:
        km.shutdown_kernel(now=True)
    assert not marker.exists(), (
        f"with PYTHONPATH={str(src)!r} (inside the LENIENT project) the restarted host kernel imported the "
        f"module the sandbox wrote there: {marker.read_text()!r} (after restart: {alive.strip()!r})"
    )
