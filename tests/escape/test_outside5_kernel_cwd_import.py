"""Outside review (6th): the host kernel imports modules from the notebook's folder (host code, any level).

Attack: the kernelspec runs ``python -m glsandbox_kernel.kernel`` with the
notebook's folder as its working directory, and ``-m`` puts that folder at
``sys.path[0]``, ahead of site-packages and even the standard library.
At LENIENT the project folder (that same folder) is writable by the
sandbox. A cell writes ``psutil.py`` (or any module the host kernel imports
at start or lazily: ``glsandbox_kernel`` itself, ``zmq``, ``json`` ...) into
the project folder; the next kernel start (Restart, reopening the notebook
tomorrow, ``glsandbox run`` again) imports it in the trusted host process,
outside every confinement, as the kernel's user (root here). The planted
module can hand over to the real one, so nothing looks wrong.

The same without any sandbox write: an untrusted notebook folder (the very
thing glsandbox is for) that ships ``psutil.py`` next to the notebook gets it
imported by the host kernel of ``glsandbox run nb.ipynb --level strict``
before the first cell runs (second test).

Measured here (root, namespace, LENIENT, project owned by uid 65534): after
one sandboxed cell and a kernel restart, the host kernel process ran the
planted code (it wrote a file outside every folder the sandbox sees).

Judged from the host: after the restart, the marker file the planted module
would write (a host path the sandbox cannot see) does not exist.

Fix (suggested): ``kernel/__main__.py`` / ``kernel/install.py``: drop the
working directory from the host's ``sys.path`` (run the kernel with
``python -P`` on 3.11+, or ``-I``/``-s`` plus removing ``sys.path[0]`` first
thing, or a console-script entry point), and the same for the zygote
template and every host process started in a folder the sandbox can write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from glsandbox_kernel.kernel.install import kernel_spec

from .test_outside5_common import folders, need, write_notebook

pytestmark = pytest.mark.timeout(300)

#: the planted module: proves it ran in the host process, then hands over to the real module
PAYLOAD = """
import os, sys, importlib
with open({marker!r}, "w") as fh:
    fh.write("host kernel pid %d uid %d imported the planted module" % (os.getpid(), os.getuid()))
here = os.path.dirname(os.path.abspath(__file__))
saved = sys.path[:]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
del sys.modules[__name__]
try:
    sys.modules[__name__] = importlib.import_module(__name__)
finally:
    sys.path[:] = saved
"""

#: the sandboxed cell: write the payload as psutil.py into the working directory (the project)
PLANT = """
import os
with open("psutil.py", "w") as fh:
    fh.write({payload!r})
print("planted", os.path.exists("psutil.py"))
"""


def _run(client: object, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("ERROR " + msg["content"]["evalue"])

    client.execute_interactive(code, output_hook=hook, timeout=120)  # type: ignore[attr-defined]
    return "".join(out)


def test_the_host_kernel_never_imports_a_module_the_sandbox_wrote(tmp_path: Path) -> None:
    need("namespace")
    project, outside = folders(tmp_path)
    marker = outside / "imported-by-host"
    spec_dir = tmp_path / "kernels" / "glsandbox-lenient-a5"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(kernel_spec(level="lenient", isolation="namespace")))
    km = KernelManager(
        kernel_name="glsandbox-lenient-a5",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    km.start_kernel(cwd=str(project))
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        said = _run(kc, PLANT.format(payload=PAYLOAD.format(marker=str(marker))))
        assert "planted True" in said, said
        kc.stop_channels()
        km.restart_kernel(now=True)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        alive = _run(kc, "print('alive', 6 * 7)")
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    assert not marker.exists(), (
        f"the host kernel imported the module the sandbox wrote into its working directory: "
        f"{marker.read_text()!r} (after restart: {alive.strip()!r})"
    )


def test_glsandbox_run_of_an_untrusted_folder_runs_none_of_its_code_on_the_host(tmp_path: Path) -> None:
    """The same hole without LENIENT: the untrusted notebook's own folder ships ``psutil.py``.

    ``glsandbox run untrusted/nb.ipynb --level strict`` starts the kernel with the
    notebook's folder as cwd, so the host kernel imports the folder's ``psutil.py`` before
    any cell runs: the notebook never needs the sandbox at all.
    """
    from ..conftest import glsandbox_cli

    project, marker = downloaded_with_psutil(tmp_path)
    res = glsandbox_cli("run", str(project / "nb.ipynb"), "--level", "strict", "-o", str(tmp_path / "out.ipynb"))
    assert not marker.exists(), (
        f"glsandbox run --level strict: the host kernel imported the notebook folder's psutil.py: "
        f"{marker.read_text()!r} (run rc {res.returncode})"
    )


def downloaded_with_psutil(tmp_path: Path) -> tuple[Path, Path]:
    """``(folder, marker)``: an untrusted notebook folder that ships ``psutil.py`` (which would write
    ``marker``, in a host-only folder, if a host process imported it) and ``nb.ipynb``."""
    need("namespace")
    project, outside = folders(tmp_path, "downloaded", writable=False)
    marker = outside / "imported-by-host"
    (project / "psutil.py").write_text(PAYLOAD.format(marker=str(marker)))
    write_notebook(project / "nb.ipynb", "print(6 * 7)")
    return project, marker
