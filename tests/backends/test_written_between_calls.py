"""Files the sandbox writes while no call runs are in the audit records (review 25b F5).

A thread a cell left running, a widget callback (``send_comm``) or an inspection writes between
two calls: the next call's record lists the change marked ``"when": "between calls"``, and what
changed after the last call is in the ``session_end`` record (``"when": "after the last call"``).
``glsandbox attest`` names such files as subjects. Real sandboxes, real kernels, real files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.config import FilesystemConfig
from glsandbox_kernel.notebook.metadata import collect_records
from glsandbox_kernel.written_files import WriteTracker

from ..conftest import glsandbox_cli
from ..escape.test_outside5_common import folders, need, write_notebook

pytestmark = pytest.mark.timeout(400)

#: a thread that writes ``name`` once the host made ``sandbox-output/go``, then ``sandbox-output/done``
LATE_WRITER = """
import os, threading, time
def later():
    while not os.path.exists('sandbox-output/go'):
        time.sleep(0.02)
    with open('sandbox-output/{name}', 'w') as fh:
        fh.write('forged,99\\n')
    open('sandbox-output/done', 'w').close()
threading.Thread(target=later, daemon=True).start()
"""

WIDGET = """
import comm
def _target(c, open_msg):
    def on_msg(m):
        with open('sandbox-output/widget.csv', 'w') as fh:
            fh.write('clicked,' + str(m['content']['data']['n']) + '\\n')
    c.on_msg(on_msg)
comm.get_comm_manager().register_target('writer', _target)
"""


def _wait_for(path: Path) -> None:
    for _ in range(600):  # the host waits for the sandbox's file (not a timing assertion)
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _entries(record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    files = (record.get("extra") or {}).get("written_files") or []
    return [e for e in files if isinstance(e, dict) and Path(str(e.get("path"))).name == name]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tracker_keeps_each_closing_scan_for_the_next_call(tmp_path: Path) -> None:
    tracker = WriteTracker((str(tmp_path),))
    before, between = tracker.begin()
    assert between == []  # the session's first call: nothing to compare with
    (tmp_path / "a.csv").write_text("a\n")
    assert [(Path(e["path"]).name, e["change"], "when" in e) for e in tracker.end(before)] == [
        ("a.csv", "created", False)
    ]
    (tmp_path / "b.csv").write_text("b\n")  # while no call runs
    (tmp_path / "a.csv").unlink()
    before, between = tracker.begin()
    assert [(Path(e["path"]).name, e["change"], e["when"]) for e in between] == [
        ("b.csv", "created", "between calls"),
        ("a.csv", "deleted", "between calls"),
    ]
    assert between[0]["sha256"] == _sha256(tmp_path / "b.csv")
    assert tracker.end(before) == []
    (tmp_path / "c.csv").write_text("c\n")  # after the last call
    (final,) = tracker.final() or []
    assert (Path(final["path"]).name, final["change"], final["when"]) == ("c.csv", "created", "after the last call")
    assert WriteTracker((str(tmp_path),)).final() is None  # no call ran: no scan, nothing claimed


def test_widget_callback_and_late_thread_writes_reach_the_records(tmp_path: Path) -> None:
    need("namespace")
    project, _outside = folders(tmp_path)
    log = tmp_path / "audit.jsonl"
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    cfg = create_config_by_level(
        "moderate", isolation_type=IsolationType.NAMESPACE, filesystem=fs, audit_log_path=str(log)
    )
    out = project / "sandbox-output"
    with OSSandbox(cfg) as sandbox:
        assert sandbox.run_cell(WIDGET).status == "ok"
        frame: dict[str, Any] = {"content": {}, "metadata": {}, "buffers": []}
        sandbox.send_comm({**frame, "type": "comm_open", "content": {"comm_id": "w1", "target_name": "writer"}})
        sandbox.send_comm({**frame, "type": "comm_msg", "content": {"comm_id": "w1", "data": {"n": 3}}})
        assert (out / "widget.csv").read_text() == "clicked,3\n"  # written by the callback, no call running
        cell = sandbox.run_cell("pass").audit_record or {}
        (widget,) = _entries(cell, "widget.csv")
        assert (widget["change"], widget["when"], widget["sha256"]) == (
            "created",
            "between calls",
            _sha256(out / "widget.csv"),
        )
        assert sandbox.run_cell(LATE_WRITER.format(name="late.csv")).status == "ok"
        (out / "go").touch()
        _wait_for(out / "done")
    end = sandbox.audit_records[-1]
    assert end["event_type"] == "session_end"
    (late,) = _entries(end, "late.csv")
    assert (late["change"], late["when"], late["sha256"]) == (
        "created",
        "after the last call",
        _sha256(out / "late.csv"),
    )
    checked = glsandbox_cli("audit", "verify", str(log))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    on_disk = [json.loads(line) for line in log.read_text().splitlines()]
    assert on_disk[-1]["record_hash"] == end["record_hash"]


def test_attest_names_a_file_written_between_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A glsandbox kernel driven cell by cell (nbclient), the host acting between the cells."""
    need("namespace")
    pytest.importorskip("cryptography")
    import nbformat
    from nbclient import NotebookClient

    project, _outside = folders(tmp_path)
    write_notebook(tmp_path / "nb.ipynb", LATE_WRITER.format(name="results.csv"), "pass")
    nb = nbformat.read(str(tmp_path / "nb.ipynb"), as_version=4)
    key = tmp_path / "signing.key"
    assert glsandbox_cli("keygen", str(key)).returncode == 0
    monkeypatch.setenv("GLSANDBOX_AUDIT_KEY", key.read_text(encoding="ascii"))  # the kernel signs its records
    client = NotebookClient(nb, kernel_name="glsandbox", timeout=300, resources={"metadata": {"path": str(project)}})
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        (project / "sandbox-output" / "go").touch()
        _wait_for(project / "sandbox-output" / "done")
        client.execute_cell(nb.cells[1], 1)
    saved = project / "saved.ipynb"
    nbformat.write(nb, str(saved))
    att = tmp_path / "saved.intoto.jsonl"
    glsandbox_cli("attest", str(saved), "--sign-key", str(key), "-o", str(att))
    cell_two = collect_records(nbformat.read(str(saved), as_version=4))[-1]
    assert [e["when"] for e in _entries(cell_two, "results.csv")] == ["between calls"]
    statement = json.loads(base64.b64decode(json.loads(att.read_text().splitlines()[0])["payload"]))
    results = project / "sandbox-output" / "results.csv"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects.get(str(results)) == _sha256(results), subjects
    assert statement["predicate"]["verification"]["ok"], statement["predicate"]["verification"]["problems"]
