"""Outside review 26: the CONTAINER backend cannot run a project folder whose path holds a colon.

Severity: low-medium (user-facing; the analyst's folder ``~/emissions/Q1:2026`` or ``report 10:30`` runs under
NAMESPACE and BASIC but every cell under ``--isolation container`` fails before it starts).

Symptom: ``glsandbox run nb.ipynb --isolation container`` in ``/tmp/.../my proj:v2``: cell 1 fails with
"BackendUnavailableError: isolation backend 'container' is unavailable: the Docker daemon could not create the
container: invalid volume specification: '/tmp/.../my proj:v2:/work/project:ro'"; no record, the run stops. The
same notebook in a folder without a colon runs (3 ok); NAMESPACE and BASIC run it in the colon folder (measured).
``--isolation gvisor`` fails the same way, and so does Podman's API (``DOCKER_HOST`` at the podman socket: "fill out
specgen: ...: incorrect volume format, should be [host-dir:]ctr-dir[:option]").

Where: ``backends/container/settings.py`` builds ``"volumes": {host_path: {"bind": ..., "mode": ...}}``, which
docker-py turns into the ``Binds`` strings ``host:container:mode``; a ``:`` in ``host`` makes the daemon's
``src:dst:mode`` split fail (a ``,`` would break the ``--mount`` CSV form the same way).

Suggested fix: pass the project, ``--ro``/``--rw`` folders and the bundle as ``mounts=[docker.types.Mount(target,
source, type="bind", read_only=...)]`` (the API's ``HostConfig.Mounts``, no string parsing), for Docker and
Podman alike; or refuse such a path up front with a message that names the colon.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from ..escape.test_outside5_common import need

pytestmark = pytest.mark.timeout(400)


def test_container_runs_a_project_folder_with_a_colon(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    need("container")
    project = tmp_path / "emissions Q1:2026"
    project.mkdir()
    (project / "activity.csv").write_text("fuel,litres\ndiesel,100\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell("import csv\nlen(list(csv.DictReader(open('activity.csv'))))"))
    nbformat.write(nb, str(project / "nb.ipynb"))
    ran = glsandbox_cli("run", str(project / "nb.ipynb"), "--isolation", "container")
    assert ran.returncode == 0, (
        f"--isolation container cannot run a notebook in {project.name!r} (NAMESPACE and BASIC can):\n"
        f"{ran.stdout[-1500:]}{ran.stderr[-1500:]}"
    )
