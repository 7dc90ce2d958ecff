"""Outside review (9th): a LENIENT BASIC cell writes a ``.pth`` into the host's venv inside the project.

Attack: the analyst keeps the usual ``.venv`` inside the project folder and
runs glsandbox from it (the kernel, the magic or the library). At LENIENT the
project is writable. NAMESPACE binds the Python environment read-only over
the project, but BASIC's Landlock grants the writable project as one tree
(``confinement/landlock.py``: ``read_write += shown`` for every
``layout.writable`` folder), and Landlock cannot take a sub-tree back. So
``.venv/lib/pythonX.Y/site-packages`` is writable from the sandbox; a
``zz.pth`` whose ``import`` line runs at every start of that interpreter
executes on the host -- the next kernel start, ``glsandbox`` CLI, pip --
with the host user's uid, outside every control. (``magics/host_path.py``
also never looks there: ``_import_folders`` skips the environment paths as
"shown read-only".)

Measured here (root, BASIC, Landlock present): the cell printed WROTE, the
host found ``zz_evil.pth`` (uid 0, 0600) and the next ``.venv/bin/python -c 1``
ran its payload as uid 0.

Judged from the host: after the cell, no ``.pth`` it wrote sits in the
environment's site-packages (the write is refused, or BASIC refuses a
writable project holding the environment, as it refuses one holding
masked names).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .test_outside5_common import folders, need

pytestmark = pytest.mark.timeout(300)

SCRIPT = """
import dataclasses, sys
from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level
from glsandbox_kernel.config import IsolationType, NetworkConfig
project, site = sys.argv[1], sys.argv[2]
cfg = create_config_by_level(SecurityLevel.LENIENT, isolation_type=IsolationType.BASIC, fallback_to_basic=False)
cfg = cfg.replace(network=NetworkConfig(allow_network=False),
                  filesystem=dataclasses.replace(cfg.filesystem, project_dir=project, project_access="write"))
cell = f'''
try:
    with open({site!r} + "/zz_evil.pth", "w") as fh:
        fh.write("import os; open(os.path.join(os.path.dirname(os.__file__), 'x'), 'r')\\\\n")
    print("WROTE")
except OSError as exc:
    print("DENIED", exc)
'''
try:
    with OSSandbox(cfg) as sandbox:
        print(sandbox.run_cell(cell).outputs)
except Exception as exc:  # a refusal is the safe outcome
    print("REFUSED", type(exc).__name__, exc)
"""


def test_a_lenient_basic_cell_cannot_write_the_hosts_venv_inside_the_project(tmp_path: Path) -> None:
    need("basic")
    project, _ = folders(tmp_path)
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / py / "site-packages"
    ours = sysconfig.get_paths()["purelib"]  # this venv: glsandbox and its dependencies
    (site / "host.pth").write_text(f"{ours}\nimport site; site.addsitedir({ours!r})\n")
    script = tmp_path / "attack.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(script), str(project), str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    said = done.stdout + done.stderr
    assert "WROTE" in said or "DENIED" in said or "REFUSED" in said, said
    assert not (site / "zz_evil.pth").exists(), (
        f"a LENIENT BASIC cell wrote a .pth into the host's venv inside the project, which every "
        f"start of that interpreter runs on the host: {said[-600:]!r}"
    )
