"""Outside review 23: on the container backend the project folder is not the working directory.

README (Your project folder): the project folder "is the working directory, so
``pd.read_csv("activity.csv")``, ``%run helpers.py``, ``import helpers`` and
``open("data/factors.csv")`` work unchanged". With ``--isolation container`` (and gVisor, the same
settings) the project is bound at ``/work/project`` but the working directory stays ``/work`` (the
container's HOME, settings.py ``working_dir``), so the notebook that ran on namespace fails with a
bare ``FileNotFoundError`` and no notice says where the data went.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import glsandbox_cli
from .test_outside5_common import need, write_notebook


def test_container_notebook_reads_the_file_next_to_it(tmp_path: Path) -> None:
    need("container")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "activity.csv").write_text("fuel,activity\ndiesel,10\n", encoding="utf-8")
    write_notebook(project / "nb.ipynb", "import os\nprint(os.getcwd())\nprint(open('activity.csv').read())")
    ran = glsandbox_cli("run", str(project / "nb.ipynb"), "--isolation", "container")
    out = json.loads((project / "nb.glsandbox.ipynb").read_text(encoding="utf-8"))
    shown = json.dumps([o for o in out["cells"][0]["outputs"] if o["output_type"] in ("stream", "error")][:1])
    shown += " " + ran.stdout
    assert ran.returncode == 0, shown  # today: cwd /work, FileNotFoundError: 'activity.csv'
    assert "diesel,10" in shown, shown
