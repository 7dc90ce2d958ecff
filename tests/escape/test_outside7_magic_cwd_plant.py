"""Outside review (8th): a LENIENT ``%%sandbox`` cell plants a module the stock host kernel imports.

Attack: in an ordinary IPython kernel (``python -m ipykernel_launcher``, the
``python3`` kernelspec) the magic's project folder is the current directory
(``magic._project_from`` -> ``project.default_project_dir``), and at LENIENT
the project is writable by the sandbox. IPython puts ``''`` -- the current
directory -- on the host kernel's ``sys.path`` ahead of site-packages. So the
sandboxed cell writes ``tqdm.py`` (or ``pandas.py``, ``requests.py``, any
third-party name the notebook imports later) into the working directory, and
the next plain ``import tqdm`` in the host kernel runs it, with the host
kernel's uid, outside every sandbox control. Review 6 closed this for the
glsandbox kernel (``safe_python``); the magic runs in kernels that do not
start that way.

Measured here (root, namespace backend): the sandboxed cell wrote
``tqdm.py`` (owned by uid 65534, mode 0600); the host cell ``import tqdm``
imported ``/tmp/.../tqdm.py`` and the payload wrote a file outside the
project as uid 0.

Judged from the host: after the LENIENT ``%%sandbox`` cell planted the
module, a host ``import tqdm`` does not run it (the marker in a host-only
folder is never written).

Fix (suggested): the magic refuses to make a folder on the host's
``sys.path`` (``''`` is the cwd) writable -- project read-only or the cell
refused, with a message naming the folder -- or runs LENIENT cells with the
project writable only below ``sandbox-output/``; alternatively drop ``''``
from the host's ``sys.path`` at ``%load_ext`` and say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from .test_outside5_common import folders, need
from .test_outside5_kernel_cwd_import import PAYLOAD


def _run(client: object, code: str) -> str:
    """Streams, errors and the magic's notices (displays marked role "notice", which its record lists)."""
    out: list[str] = []

    def hook(msg: dict) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] == "error":
            out.append("ERROR " + content["evalue"])
        elif (
            msg["msg_type"] == "display_data"
            and (content.get("metadata") or {}).get("glsandbox", {}).get("role") == "notice"
        ):
            out.append(content["data"].get("text/plain", "") + "\n")

    client.execute_interactive(code, output_hook=hook, timeout=120)  # type: ignore[attr-defined]
    return "".join(out)


pytestmark = pytest.mark.timeout(300)

#: the sandboxed cell: the payload as tqdm.py in the sandbox's working directory (the project)
PLANT = """%%sandbox lenient
import os
with open("tqdm.py", "w") as fh:
    fh.write({payload!r})
print("planted", os.path.exists("tqdm.py"))
"""


def test_a_lenient_magic_cell_cannot_plant_a_module_the_host_kernel_imports(tmp_path: Path) -> None:
    need("namespace")
    pytest.importorskip("ipykernel")
    project, outside = folders(tmp_path)
    marker = outside / "imported-by-host"
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(project), startup_timeout=120)
    try:
        loaded = _run(kc, "%load_ext glsandbox_kernel")
        assert "ERROR" not in loaded, loaded
        said = _run(kc, PLANT.format(payload=PAYLOAD.format(marker=str(marker))))
        # contained either way: the write is refused (the project shown read-only, saying why),
        # or the module lands where the host kernel no longer imports from
        assert "planted True" in said or ("Read-only file system" in said and "shown read-only" in said), said
        imported = _run(kc, "import tqdm\nprint('imported', tqdm.__name__)")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert not marker.exists(), (
        f"the stock host kernel imported the module a LENIENT %%sandbox cell wrote into its working "
        f"directory: {marker.read_text()!r} ({imported.strip()!r})"
    )
