"""Two ``glsandbox run`` into one ``--audit`` file: each notebook verifies on its own.

The JSONL file is one chain across sessions, so the second run's records go
on from the first run's head (seq 3, not 0). Its notebook's chain starts at its
own signed session_start; deleting the cell that holds it is still named.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from ..conftest import glsandbox_cli

pytestmark = pytest.mark.timeout(600)

KEY = b"shared-audit-file-key-0123456789"


def test_two_runs_share_one_audit_file_and_each_notebook_verifies(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # pytest makes it 0700 and root-owned: see test_outside5 for that case
    (tmp_path / "data.csv").write_text("fuel,litres\ndiesel,10\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("print(open('data.csv').read())"),
        nbformat.v4.new_code_cell("print(2.68 * 10)"),
    ]
    nbformat.write(nb, str(tmp_path / "n.ipynb"))
    key = tmp_path / "k"
    key.write_bytes(KEY)
    audit = tmp_path / "audit.jsonl"
    outs = []
    for i in (1, 2):
        out = tmp_path / f"out{i}.ipynb"
        res = glsandbox_cli("run", str(tmp_path / "n.ipynb"), "-o", str(out), "--key", str(key), "--audit", str(audit))
        assert res.returncode == 0, res.stdout + res.stderr
        outs.append(out)
    seqs = [json.loads(line)["seq"] for line in audit.read_text().splitlines()]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 6  # one chain over both sessions
    for path in [audit, *outs]:
        res = glsandbox_cli("audit", "verify", str(path), "--key", str(key))
        assert res.returncode == 0, f"{path.name}: {res.stdout}{res.stderr}"

    second = nbformat.read(str(outs[1]), as_version=4)
    del second.cells[0]  # the cell whose records begin with the session's start
    tampered = tmp_path / "tampered.ipynb"
    nbformat.write(second, str(tampered))
    res = glsandbox_cli("audit", "verify", str(tampered), "--key", str(key))
    assert res.returncode != 0
    assert "missing before it" in res.stdout + res.stderr, res.stdout + res.stderr
