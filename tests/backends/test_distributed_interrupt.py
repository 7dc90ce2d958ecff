"""Ctrl-C in ``glsandbox run --cluster local:2 NB...``: the notebooks not started are cancelled, the running finish.

A real ``glsandbox run`` subprocess over six notebooks that each sleep, SIGINT sent from
the host once the first notebooks' kernels run. Judged by what was recorded, never by
time: every notebook either ran (its output written, its task carried in the run chain)
or was cancelled before it started (named in the summary and in the run chain's
cancellation records and manifest, no output); at least one was cancelled, so the run
ended before all had run. Exit status 130, ``glsandbox audit verify`` of the run chain
OK, and no process the run started (kernels, sandboxes) nor cgroup of theirs is left.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytest.importorskip("distributed", reason="the 'distributed' extra (dask[distributed]) is not installed")

from ..conftest import glsandbox_cli, live_pids, wait_gone
from .test_distributed import STRICT, slow
from .test_distributed import client as client  # the module's 2-worker cluster fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

NOTEBOOKS = 6


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kernels(pid: int) -> int:
    """The notebook kernels running now: the run's direct children that are Python processes."""
    import psutil

    try:
        return sum(1 for p in psutil.Process(pid).children() if "python" in os.path.basename(p.cmdline()[0]))
    except (psutil.NoSuchProcess, psutil.ZombieProcess, IndexError):
        return 0


def _cgroups_of(pids: set[int]) -> list[str]:
    """Cgroup directories named for one of ``pids`` as their creator (``glsandbox-<name>-h<pid>.<...>``)."""
    with open("/proc/self/mounts") as fh:
        points = {line.split()[1] for line in fh if line.split()[2] in ("cgroup", "cgroup2")}
    found = []
    for point in points:
        for root, dirs, _files in os.walk(point):
            if root.count(os.sep) - point.count(os.sep) >= 4:
                dirs.clear()
            for name in dirs:
                match = re.match(r"glsandbox-.+-h(\d+)\.", name)
                if match and int(match[1]) in pids:
                    found.append(os.path.join(root, name))
    return found


def test_ctrl_c_cancels_the_queued_notebooks_and_keeps_the_running(tmp_path: Path) -> None:
    names = [f"nb{i}.ipynb" for i in range(NOTEBOOKS)]
    for i, name in enumerate(names):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(f"import time\ntime.sleep(6)\nprint('notebook {i} done')")]
        nbformat.write(nb, tmp_path / name)
    out, err = (tmp_path / "stdout.txt").open("w+"), (tmp_path / "stderr.txt").open("w+")
    env = {k: v for k, v in os.environ.items() if k != "GLSANDBOX_AUDIT_KEY"}
    command = [sys.executable, "-m", "glsandbox_kernel.cli", "run", "--cluster", "local:2", *names]
    proc = subprocess.Popen(
        [*command, "--audit", "run.jsonl", "-o", "out/"], cwd=tmp_path, stdout=out, stderr=err, env=env
    )
    seen: set[int] = set()
    try:
        while _kernels(proc.pid) < 1 and proc.poll() is None:  # a first notebook has its kernel
            seen.update(_tree(proc.pid))
            time.sleep(0.05)
        seen.update(_tree(proc.pid))
        assert proc.poll() is None, "the run ended before any notebook started"
        proc.send_signal(signal.SIGINT)
        while proc.poll() is None:
            seen.update(_tree(proc.pid))
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    out.seek(0), err.seek(0)
    stdout, stderr = out.read(), err.read()
    out.close(), err.close()
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted: cancelling the notebooks not started yet" in stderr

    records = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    ran = {
        entry["detail"]["notebook"]
        for r in records
        for entry in r["extra"].get("cluster_tasks", [])
        if entry["kind"] == "notebook"
    }
    cancelled = [e["label"] for r in records for e in r["extra"].get("cluster_cancelled", [])]
    manifest = records[-1]["extra"]["cluster_manifest"]
    assert sorted(e["label"] for e in manifest["cancelled"]) == sorted(cancelled)
    assert manifest["tasks"]["cancelled"] == len(cancelled)
    # Every notebook either ran or was cancelled before it started; some were cancelled.
    assert len(cancelled) == len(set(cancelled)) and not ran & set(cancelled), (ran, cancelled)
    assert ran | set(cancelled) == set(names), (ran, cancelled)
    assert ran and cancelled, (ran, cancelled)
    for name in names:
        output = tmp_path / "out" / name.replace(".ipynb", ".glsandbox.ipynb")
        if name in cancelled:
            assert f"CANCELLED {name}: not started" in stdout and not output.exists()
        else:
            assert re.search(rf"ok +{re.escape(name)} ->", stdout) and output.exists(), stdout
    assert f"{len(cancelled)} cancelled" in stdout

    verified = glsandbox_cli("audit", "verify", str(tmp_path / "run.jsonl"), timeout=120)
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stdout + verified.stderr
    assert f"{len(cancelled)} task(s) cancelled before they started" in verified.stdout

    # Nothing the run started survives it: kernels, sandboxes, their cgroups.
    assert seen, "no process of the run was seen"
    assert not wait_gone(sorted(seen), timeout=30.0), live_pids(sorted(seen))
    assert not _cgroups_of(seen | {proc.pid}), _cgroups_of(seen | {proc.pid})


def test_cancel_pending_cancels_only_calls_not_started(client: Any, tmp_path: Path) -> None:
    """The executor's ``cancel_pending``: calls no worker began fail with ``CancelledError``, the rest run."""
    from glsandbox_kernel.distributed import SandboxedExecutor, carried_tasks, verify_cluster_records

    path = tmp_path / "run.jsonl"
    ex = SandboxedExecutor(client, STRICT, audit_path=str(path))
    try:
        futures = [ex.submit(slow, 2.0, i) for i in range(8)]
        while not any(f.done() for f in futures):  # a first call ran: the cluster is busy
            time.sleep(0.05)
        entries = ex.cancel_pending()
        outcomes = {i: f.exception(timeout=240) for i, f in enumerate(futures)}
    finally:
        ex.shutdown()
    cancelled = {i for i, e in outcomes.items() if isinstance(e, cf.CancelledError)}
    ran = {i for i, e in outcomes.items() if e is None}
    assert cancelled and ran and cancelled | ran == set(range(8)), outcomes
    assert all(futures[i].result() == i for i in ran)
    assert len(entries) <= len(cancelled)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    manifest = records[-1]["extra"]["cluster_manifest"]
    assert manifest["tasks"]["cancelled"] == len(cancelled) and manifest["tasks"]["ok"] == len(ran)
    assert len({t["task"] for t in carried_tasks(records) if t["kind"] == "call"}) == len(ran)
    result = verify_cluster_records(records)
    assert result.ok, result.problems
