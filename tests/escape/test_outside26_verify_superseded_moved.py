"""Outside review 26, the ``superseded`` variant: a re-run's earlier record moved, a deleted cell's record hidden.

A JupyterLab-like frontend (``tests/jupyter/test_interactive.py``: ``cellId`` on every execute_request,
each cell keeps its latest run's outputs) drives a real glsandbox kernel over ZMQ. Moving a re-run
cell's ``superseded`` records into ``preceding`` hid the re-execution from ``--strict``; moving a
deleted cell's record into the next cell's ``superseded`` passed it off as a re-run. Both are named now
(each cell record says whether it ran silently and which ``cellId`` it ran under). A silent execute_request
(what variable-inspector extensions send) leaves its record in the next cell's ``preceding``: still OK,
but named (review 28: its code ran outside any cell; a warning, under ``--strict`` a problem).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from ..jupyter.test_interactive import SOURCES, Frontend
from ..jupyter_fixtures import glsandbox_kernelspec

__all__ = ["glsandbox_kernelspec"]

pytestmark = pytest.mark.timeout(300)
AUDIT = "application/vnd.glsandbox.audit+json"


def _verify(nb: Any, tmp_path: Any, name: str, *args: str) -> Any:
    path = tmp_path / name
    path.write_text(json.dumps(nb), encoding="utf-8")
    return glsandbox_cli("audit", "verify", str(path), *args)


def _payload(cell: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = cell["outputs"][-1]["data"][AUDIT]
    return found


def _run_silent(ui: Frontend, code: str) -> None:
    content = {"code": code, "silent": True, "store_history": False, "user_expressions": {}}
    msg = ui.kc.session.msg("execute_request", content)
    ui.kc.shell_channel.send(msg)
    while True:
        reply = ui.kc.get_iopub_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"] and reply["msg_type"] == "status":
            if reply["content"]["execution_state"] == "idle":
                break
    ui.kc.get_shell_msg(timeout=60)


def test_moved_superseded_and_silent_runs(glsandbox_kernelspec: str, tmp_path: Any) -> None:
    ui = Frontend("glsandbox")
    try:
        cells = [ui.add(s) for s in SOURCES]
        ui.run(cells[0])
        _run_silent(ui, "_inspected = sorted(globals())[:3]")
        for index in cells[1:]:
            ui.run(index)
        once = json.loads(json.dumps(ui.nb))
        ui.run(cells[1])  # the analyst re-runs the middle cell
        nb = json.loads(json.dumps(ui.nb))
    finally:
        ui.close()

    silent = [r for r in _payload(once["cells"][1]).get("preceding", []) if r["extra"].get("kind") == "cell"]
    assert [r["extra"]["silent"] for r in silent] == [True], "the silent run's record is in the next preceding"
    # the silent run assigned a name (``_inspected``): named by plain verify, a problem under --strict
    warned = _verify(once, tmp_path, "once.ipynb")
    assert warned.returncode == 0 and "a silent run (seq" in warned.stdout, warned.stdout + warned.stderr
    strict = _verify(once, tmp_path, "once.ipynb", "--strict")
    assert strict.returncode == 1 and "--strict: cell 2 (In [2]): a silent run" in strict.stdout, strict.stdout
    honest = _verify(nb, tmp_path, "honest.ipynb")
    assert honest.returncode == 0 and "re-executed" in honest.stdout, honest.stdout + honest.stderr

    # the re-run's earlier records moved into preceding: no longer "re-executed", --strict would pass
    moved = copy.deepcopy(nb)
    payload = _payload(moved["cells"][1])
    payload["preceding"] = [*payload.pop("superseded"), *payload.get("preceding", [])]
    for args in ((), ("--strict",)):
        result = _verify(moved, tmp_path, "moved.ipynb", *args)
        assert result.returncode == 1 and "among the records made before it" in result.stdout, result.stdout

    # cell 3 deleted, its record passed off as an earlier run of cell 2
    hidden = copy.deepcopy(nb)
    deleted = hidden["cells"].pop(2)
    payload = _payload(hidden["cells"][1])
    payload["superseded"] = [
        *payload["superseded"],
        *_payload(deleted).get("preceding", []),
        _payload(deleted)["record"],
    ]
    result = _verify(hidden, tmp_path, "hidden.ipynb")
    assert result.returncode == 1 and "record of another cell" in result.stdout, result.stdout


def test_a_moved_record_of_an_older_glsandbox_is_a_warning_and_fails_strict() -> None:
    """Records that do not say whether they ran silently (an older glsandbox; ``OSSandbox.run_cell`` used as
    a library): a cell record in ``preceding`` may be a silent run, so it is a warning; ``--strict`` fails."""
    from glsandbox_kernel.notebook.verify import verify_notebook

    from ..jupyter.test_evidence import SOURCES as LIB_SOURCES
    from ..jupyter.test_evidence import build_notebook

    nb = json.loads(json.dumps(build_notebook(LIB_SOURCES[:3])))
    assert verify_notebook(nb, strict=True).ok
    deleted = nb["cells"].pop(1)
    assert "silent" not in _payload(deleted)["record"]["extra"]
    payload = _payload(nb["cells"][1])
    payload["preceding"] = [*payload.get("preceding", []), _payload(deleted)["record"]]
    plain = verify_notebook(nb)
    assert plain.ok and any("among the records made before it" in w for w in plain.warnings), plain.warnings
    strict = verify_notebook(nb, strict=True)
    assert any(p.startswith("--strict: ") and "deleted cell" in p for p in strict.problems), strict.problems
