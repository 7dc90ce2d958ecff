"""``%%sandbox`` notebooks run by nbclient in a stock ``python3`` kernel, then ``glsandbox audit verify``.

Display ids: nbclient and JupyterLab apply an ``update_display_data`` to every output with its id, so
the magic scopes a sandbox's display ids to the cell that showed them (as the glsandbox kernel does,
``kernel/displays.py``): a cell's own updates rewrite its own display, a later cell's update of an
earlier cell's display is a new output of the later cell, and the earlier cell's sealed output stays
as its record hashed it. Project folder: a kernel started where no project folder can be (``/tmp``,
``/``) says so on the first sandboxed cell, as a notice its record lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel.output_budget import MAX_DISPLAY_ID

from ..escape.test_outside15_common import code_cell, executed, verify

pytestmark = pytest.mark.timeout(600)

#: the longest display id a sandbox frame may carry: scoped and prefixed, it must still reach its output
LONGEST = "L" * MAX_DISPLAY_ID


def _text(out: dict[str, Any]) -> str:
    text = out["data"].get("text/plain", "")
    return "".join(text) if isinstance(text, list) else str(text)  # nbformat may save it as lines


def _displays(cell: dict[str, Any], role: str | None = None) -> list[str]:
    """The text of a cell's displays as saved: the sandbox's (``role`` None) or the magic's own of ``role``."""
    return [
        _text(out)
        for out in cell["outputs"]
        if out["output_type"] == "display_data" and (out.get("metadata") or {}).get("glsandbox", {}).get("role") == role
    ]


def test_a_later_cell_cannot_rewrite_an_earlier_cells_display(tmp_path: Path) -> None:
    nb = executed(
        tmp_path,
        "python3",
        "%load_ext glsandbox_kernel",
        "%%sandbox\nfrom IPython.display import display\n"
        f"h = display('a1', display_id='acc')\nh.update('a2')\nlong = display('l1', display_id={LONGEST!r})\n"
        "long.update('l2')",
        "%%sandbox\nh.update('b1')\nh.update('b2')\nlong.update('m1')",
    )
    assert _displays(code_cell(nb, 1)) == ["'a2'", "'l2'"]  # its own updates; no later cell's
    assert _displays(code_cell(nb, 2)) == ["'b2'", "'m1'"]  # the later updates: new outputs of the later cell
    got = verify(nb, tmp_path, name="displays.ipynb")
    assert got.returncode == 0, f"an honest run failed verify:\n{got.stdout}{got.stderr}"


@pytest.mark.parametrize("cwd", ["/tmp", "/"])
def test_a_kernel_started_where_no_project_can_be_says_so_once(cwd: str, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    where = "%%sandbox\nimport os\nprint(os.getcwd())"
    nb = executed(Path(cwd), "python3", "%load_ext glsandbox_kernel", where, "%%sandbox\n1", f"%cd {project}", where)
    first, second = code_cell(nb, 1), code_cell(nb, 2)
    [notice] = [n for n in _displays(first, "notice") if "cannot be a project folder" in n]
    assert cwd in notice and "--project" in notice, notice
    assert not [n for n in _displays(second, "notice") if "project folder" in n]  # the first sandboxed cell only
    moved = code_cell(nb, 4)  # after %cd the same line takes the new folder as its project
    assert ["".join(o["text"]) for o in moved["outputs"] if o["output_type"] == "stream"] == [f"{project}\n"], moved
    got = verify(nb, tmp_path, name="cwd.ipynb")
    assert got.returncode == 0, f"an honest run failed verify:\n{got.stdout}{got.stderr}"
