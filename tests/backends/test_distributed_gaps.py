"""A seq gap in a session only one cluster run carried: a problem unless that run's manifest explains it.

Sessions belong to one run (review 14), so the parts of a session's chain a run did not carry are no
other run's: a gap in a session that only this run carried, which is the own session of its tasks,
means records that ran and never reached the chain (review 22 F2: verify called them "another
run's" and passed). The manifest explains a gap when it lists a task lost with the session's Dask
worker (its records died there), or when the session is none of the run's tasks' own sessions: lines
the run carries for a session of another run (a notebook's outputs kept from an earlier run, an
evicted session's held lines). Built from real records: a real sandbox session's sealed records,
sealed into a run chain by the real writer (:class:`ClusterAudit`), as the executor does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

from glsandbox_kernel import OSSandbox, create_config_by_level
from glsandbox_kernel.audit.cluster import check_cluster_runs
from glsandbox_kernel.distributed.audit import ClusterAudit

from ..conftest import glsandbox_cli

pytestmark = pytest.mark.slow

STRICT = create_config_by_level("strict")


def square(x: int) -> int:
    return x * x


@pytest.fixture(scope="module")
def session_records() -> list[dict[str, Any]]:
    """One sandbox session's sealed records: session_start, three calls, session_end."""
    with OSSandbox(STRICT) as box:
        for n in range(3):
            assert box.execute(square, n) == n * n
    records = box.audit_records
    assert [r["seq"] for r in records] == list(range(len(records))) and len(records) >= 5
    return records


def _run(records: list[dict[str, Any]], *, own: bool = True, lost_on: str | None = None) -> list[dict[str, Any]]:
    """A run chain carrying ``records`` minus the second call's record, one task per call, as the executor seals."""
    sid = records[0]["session_id"]
    audit = ClusterAudit(workers=["tcp://w1"])
    carried = [r for r in records if r["seq"] != 2]  # the second call's record never came back
    for index, rec in enumerate(carried):
        audit.add_task(
            kind="call",
            task=f"call-{index}",
            worker="tcp://w1",
            session_id=sid if own else "another-session",
            status="ok",
            records=[rec],
        )
    if lost_on is not None:
        audit.add_lost(task="call-x", worker=lost_on, outcome="recomputed")
    audit.close()
    return audit.records


def test_an_unexplained_gap_in_a_session_only_this_run_carried_is_a_problem(
    session_records: list[dict[str, Any]],
) -> None:
    problems, notes = check_cluster_runs(_run(session_records))
    assert any("missing" in p and session_records[0]["session_id"][:8] in p for p in problems), (problems, notes)
    assert not any("another run's" in n for n in notes), notes


def test_a_gap_the_manifest_explains_by_a_lost_worker_is_a_note(session_records: list[dict[str, Any]]) -> None:
    problems, notes = check_cluster_runs(_run(session_records, lost_on="tcp://w1"))
    assert not problems, problems
    assert any("lost with worker tcp://w1" in n for n in notes), notes
    # A worker lost elsewhere explains nothing here.
    problems, _notes = check_cluster_runs(_run(session_records, lost_on="tcp://w2"))
    assert any("missing" in p for p in problems), problems


def test_a_gap_in_lines_carried_for_another_runs_session_is_a_note(session_records: list[dict[str, Any]]) -> None:
    problems, notes = check_cluster_runs(_run(session_records, own=False))
    assert not problems, problems
    assert any("not a session of this run's tasks" in n for n in notes), notes


def test_a_notebooks_earlier_outputs_carried_by_a_cluster_run_are_a_note(tmp_path: Path) -> None:
    """For real: ``glsandbox run --cluster`` of a notebook whose later cells keep an earlier run's outputs.

    Cell 1 now fails, so cells 2 and 4 keep their audit outputs of the earlier session (cell 3 was
    deleted: a gap in that session). The run chain carries them with the notebook's task; its own
    session is the kernel's that ran now, so the gap is a note, and the chain verifies.
    """
    pytest.importorskip("distributed", reason="the 'distributed' extra (dask[distributed]) is not installed")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"print({n})") for n in range(4)]
    nbformat.write(nb, tmp_path / "first.ipynb")
    first = glsandbox_cli("run", str(tmp_path / "first.ipynb"), "-o", str(tmp_path / "ran.ipynb"))
    assert first.returncode == 0, first.stdout + first.stderr
    ran = nbformat.read(tmp_path / "ran.ipynb", as_version=4)
    ran.cells[0].source = "raise ValueError('now failing')"
    del ran.cells[2]
    nbformat.write(ran, tmp_path / "again.ipynb")
    chain = tmp_path / "run.jsonl"
    again = glsandbox_cli(
        "run",
        "--cluster",
        "local:1",
        str(tmp_path / "again.ipynb"),
        "--audit",
        str(chain),
        "-o",
        str(tmp_path / "out/"),
    )
    assert again.returncode == 1 and "FAILED" in again.stdout, again.stdout + again.stderr
    old = ran.cells[1].outputs[-1]["data"]["application/vnd.glsandbox.audit+json"]["record"]["session_id"]
    verified = glsandbox_cli("audit", "verify", str(chain))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"session {old[:8]}: 1 record(s) between this file's parts: not a session of this run's tasks" in (
        verified.stdout
    )
