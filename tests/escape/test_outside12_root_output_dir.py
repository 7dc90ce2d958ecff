"""Outside review (13th, new user): as root, the documented output folder is created unwritable, unexplained.

Failure: a new user working as root (a container, a VM image, a cloud notebook host) keeps
a project folder in HOME (``/root/emissions``: ``emissions.csv`` next to ``in.ipynb``) and
runs it with ``papermill in.ipynb out.ipynb -k glsandbox`` from a fresh wheel venv. The README
says the project is read-only at MODERATE and results go to ``sandbox-output/`` ("writable;
created if missing, owned like the project folder"). Measured: ``pd.read_csv('emissions.csv')``
works; the kernel creates ``sandbox-output/`` (root-owned, as the project), then
``df.to_csv('sandbox-output/total.csv')`` fails with a bare ``PermissionError: [Errno 13]
Permission denied: 'sandbox-output/total.csv'``. No output, notice or error text says why
(the sandbox runs as uid 65534 because a root-owned folder is never idmapped writable,
``project.py: writer_ids`` / ``_make_output_dir``), nor what to do (chown the project).

Severity: medium-low (the first results file of a root user fails at the door, with an error
that points at nothing; the kernel made the folder it then refuses).
Fix (suggested): ``_make_output_dir`` creates a folder the sandbox can write when the project
owner is root (owned by the sandbox uid: a fresh folder of the sandbox's own holds no
root-owned files, so no setuid hazard), or the kernel says in a notice at the first cell:
"sandbox-output/ is not writable: the project folder is owned by root; chown it to a user".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_outside5_common import need

pytestmark = pytest.mark.timeout(400)


def test_a_root_users_output_folder_can_be_written(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the failure is that of a root user")
    need("namespace")
    import nbformat
    from nbclient import NotebookClient

    os.chmod(tmp_path, 0o755)
    project = tmp_path / "emissions"  # root-owned, 0755, like a folder root made in its HOME
    project.mkdir(mode=0o755)
    (project / "emissions.csv").write_text("sector,co2\nsteel,10\ncement,7\n", encoding="utf-8")
    nb = nbformat.v4.new_notebook()
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import csv\nrows = list(csv.DictReader(open('emissions.csv')))\n"
            "total = sum(int(r['co2']) for r in rows)\nprint('total', total)"
        )
    )
    nb.cells.append(nbformat.v4.new_code_cell("open('sandbox-output/total.csv', 'w').write(f'total,{total}\\n')"))
    NotebookClient(
        nb, kernel_name="glsandbox", timeout=300, allow_errors=True, resources={"metadata": {"path": str(project)}}
    ).execute()
    shown = "".join("".join(o.get("text", "")) for o in nb.cells[0].outputs if o.get("output_type") == "stream")
    assert "total 17" in shown, nb.cells[0].outputs  # reading the project works
    errors = [o for o in nb.cells[1].outputs if o.get("output_type") == "error"]
    said = " ".join(f"{o.get('ename')}: {o.get('evalue')}" for o in errors)
    texts = " ".join(
        str(o.get("text", "")) + str((o.get("data") or {}).get("text/plain", "")) for o in nb.cells[1].outputs
    )
    assert not errors or "root" in texts or "owner" in texts, (
        f"writing the documented output folder failed with {said!r} and nothing says why "
        f"(sandbox-output owner uid {os.stat(project / 'sandbox-output').st_uid})"
    )
    assert (project / "sandbox-output" / "total.csv").is_file()
