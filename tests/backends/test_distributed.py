"""glsandbox on a real two-worker Dask LocalCluster (processes): calls, notebooks, kills, audit.

One cluster for the module (2 worker processes, 1 thread each: CPU is scarce);
every sandbox runs in a worker process, so the suite's autouse leak check
(sandboxes below this process) is complemented here by explicit checks on the
workers' process trees.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the 'distributed' extra (dask[distributed]) is not installed")

from glsandbox_kernel import (  # noqa: E402
    SandboxRemoteError,
    SandboxSecurityError,
    create_config_by_level,
)
from glsandbox_kernel.audit import compute_record_hash, verify_file  # noqa: E402
from glsandbox_kernel.cli import main as glsandbox_main  # noqa: E402
from glsandbox_kernel.distributed import (  # noqa: E402
    SandboxedExecutor,
    carried_tasks,
    cluster_doctor,
    sandboxed_submit,
    verify_cluster_records,
)
from glsandbox_kernel.exceptions import SandboxCrashedError  # noqa: E402

from ..conftest import ROOT, live_pids, wait_gone  # noqa: E402

pytestmark = pytest.mark.slow

STRICT = create_config_by_level("strict")


def descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def worker_trees(client: Any) -> dict[str, list[int]]:
    """Every Dask worker's pid and its descendants (the sandboxes it started)."""
    pids: dict[str, int] = client.run(os.getpid)
    return {addr: [pid, *descendants(pid)] for addr, pid in pids.items()}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client

    from glsandbox_kernel.distributed import SandboxPlugin
    from glsandbox_kernel.distributed.client import local_cluster

    cluster = local_cluster(2)
    c = Client(cluster)
    c.register_plugin(SandboxPlugin(max_sessions=2))
    trees: dict[str, list[int]] = {}
    try:
        yield c
        trees = worker_trees(c)
    finally:
        c.close()
        cluster.close()
    # Closing the cluster tears the plugin down on every worker: no sandbox survives it.
    left = wait_gone([pid for tree in trees.values() for pid in tree], timeout=10.0)
    assert not left, f"processes left after the cluster closed: {left}"


# -- functions run on the workers' sandboxes (module level: cloudpickled by reference) --------


def square(x: int) -> int:
    return x * x


def divide(a: int, b: int) -> float:
    return a / b


def raise_custom() -> None:
    class AgentError(Exception):
        pass

    raise AgentError("the tool call failed")


def return_object() -> object:
    class Opaque:
        pass

    return Opaque()


def where_am_i() -> dict[str, Any]:
    return {"pid": os.getpid(), "ppid": os.getppid()}


def slow(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


# -- tests -------------------------------------------------------------------------------------------


def test_calls_run_in_sandboxes_and_keep_types(client: Any) -> None:
    with SandboxedExecutor(client, STRICT) as ex:
        assert list(ex.map(square, range(12))) == [x * x for x in range(12)]
        inside = ex.submit(where_am_i).result()
        with pytest.raises(ZeroDivisionError) as zero:
            ex.submit(divide, 1, b=0).result()
        with pytest.raises(SandboxRemoteError) as remote:
            ex.submit(raise_custom).result()
        with pytest.raises(SandboxSecurityError):
            ex.submit(return_object).result()
        # Leaving a map early cancels the calls not yet returned; the executor still shuts down.
        early = ex.map(square, range(40))
        assert next(early) == 0
        early.close()
        # Chunks: several calls per Dask task, each with its own result or error.
        assert list(ex.map(square, range(10), chunksize=4)) == [x * x for x in range(10)]
        chunked = ex.submit_many(divide, [((4, 2), {}), ((1, 0), {}), ((9, 3), {})], chunksize=3)
        assert chunked[0].result() == 2.0 and chunked[2].result() == 3.0
        with pytest.raises(ZeroDivisionError):
            chunked[1].result()
    # The call ran in a confined process, not in the Dask worker itself.
    worker_pids = set(client.run(os.getpid).values())
    assert inside["pid"] not in worker_pids
    # Builtins stay builtins with the sandbox traceback as a note; ours keep their details.
    assert type(zero.value) is ZeroDivisionError
    assert any("Traceback inside the sandbox" in note for note in getattr(zero.value, "__notes__", []))
    assert remote.value.ename == "AgentError"
    assert remote.value.evalue == "the tool call failed"
    assert ex.summary is not None
    assert ex.summary["tasks"]["error"] == 4 and ex.summary["tasks"]["lost"] == 0
    assert 25 + 1 <= ex.summary["tasks"]["ok"] <= 25 + 40  # the early map's calls that ran before the cancel
    chunk_tasks = {t["task"] for t in carried_tasks(ex.audit.records)}
    # Chunks of 4, 4, 2 and 3 calls: each call sealed on its own as TASK/INDEX.
    assert sum(task.endswith("/3") for task in chunk_tasks) == 2
    assert sum(task.endswith("/2") for task in chunk_tasks) == 3
    assert verify_cluster_records(ex.audit.records).ok


def test_sessions_are_persistent_and_bounded(client: Any) -> None:
    address = sorted(client.scheduler_info()["workers"])[0]
    before = cluster_doctor(client, doctor=False)[address]
    configs = [create_config_by_level(level) for level in ("strict", "moderate", "lenient")]
    with SandboxedExecutor(client, STRICT, workers=[address]) as ex:
        assert list(ex.map(square, range(20))) == [x * x for x in range(20)]
        for cfg in configs:
            futures = [sandboxed_submit(client, square, 3, config=cfg, executor=ex) for _ in range(2)]
            assert [f.result() for f in futures] == [9, 9]
        during = cluster_doctor(client, doctor=False)[address]
    after = cluster_doctor(client, doctor=False)[address]
    # 26 calls on one worker: one session per config, all of this run's own (none from the test before).
    assert during["sessions_started"] - before["sessions_started"] == 3
    idle = [s for s in during["sessions"] if s["state"] == "idle"]
    assert len(idle) == 2  # the bound (max_sessions=2): the least recently used one was closed ...
    assert {s["security_level"] for s in idle} == {"moderate", "lenient"}
    assert after["sessions"] == []  # ... and the run's shutdown closed the other two
    tasks = carried_tasks(ex.audit.records)
    carried = [rec for task in tasks for rec in task["records"]]
    # Every session_end reached the run chain: the evicted one with a task, the others with the drain.
    ends = [r for r in carried if r["event_type"] == "session_end"]
    assert [r["security_level"] for r in ends][:1] == ["strict"]
    assert sorted(r["security_level"] for r in ends) == ["lenient", "moderate", "strict"]
    assert tasks and all(task["worker"] == address for task in tasks)
    assert verify_cluster_records(ex.audit.records).ok


def test_each_call_carries_its_own_record(client: Any) -> None:
    """A successful call's record is sealed when it returns and rides on its own task, not a later one.

    A record left for a later task or the drain would travel with the wrong call's.
    """
    address = sorted(client.scheduler_info()["workers"])[0]
    with SandboxedExecutor(client, STRICT, workers=[address]) as ex:
        for n in range(1, 4):
            assert ex.submit(square, 2).result() == 4
            tasks = [t for t in carried_tasks(ex.audit.records) if t["kind"] == "call"]
            assert len(tasks) == n
            own = [r for r in tasks[-1]["records"] if r["session_id"] == tasks[-1]["session_id"]]
            assert [r["event_type"] for r in own][-1:] == ["execution_success"]  # (and an evicted one's end)
    assert verify_cluster_records(ex.audit.records).ok


def test_sandboxed_submit_default_executor(client: Any) -> None:
    from glsandbox_kernel.distributed.client import default_executor

    assert sandboxed_submit(client, divide, 9, 3, config=STRICT).result() == 3.0
    executor = default_executor(client)
    executor.shutdown()
    assert verify_cluster_records(executor.audit.records).ok


def test_doctor_on_every_worker(client: Any) -> None:
    reports = cluster_doctor(client)
    assert len(reports) == 2
    for address, report in reports.items():
        assert report["worker"] == address
        doctor = report["doctor"]
        assert "error" not in doctor, doctor
        assert set(doctor["backends"]) >= {"basic", "namespace"}
        assert doctor["default_backend"]


def _reseal(records: list[dict[str, Any]], start: int) -> None:
    """Re-hash records[start:] and re-link the chain after them (a careful forger)."""
    for i in range(start, len(records)):
        if i:
            records[i]["prev_hash"] = records[i - 1]["record_hash"]
        records[i]["record_hash"] = compute_record_hash(records[i])


def _write(path: Any, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_cluster_audit_verified_end_to_end(client: Any, tmp_path: Any, capsys: Any) -> None:
    path = tmp_path / "run.jsonl"
    with SandboxedExecutor(client, STRICT, audit_path=str(path)) as ex:
        list(ex.map(square, range(8)))
        with pytest.raises(ZeroDivisionError):
            ex.submit(divide, 1, 0).result()
    assert glsandbox_main(["audit", "verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "chain intact" in out and "anchored in its manifest" in out
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["extra"]["cluster_run"]["run_id"] == ex.audit.run_id
    manifest = records[-1]["extra"]["cluster_manifest"]
    assert manifest["tasks"] == {"ok": 8, "error": 1, "lost": 0, "cancelled": 0}
    assert manifest["sessions"], "every session is anchored"
    errors = [r for r in records if r["event_type"] == "execution_error"]
    (failed,) = carried_tasks(errors)
    assert failed["status"] == "error" and "ZeroDivisionError" in failed["records"][-1]["extra"]["error"]
    # The records travel and are sealed in batches, as JSON lines.
    batches = [r["extra"]["cluster_tasks"] for r in records if "cluster_tasks" in r["extra"]]
    assert max(len(b) for b in batches) > 1 and all(
        isinstance(line, str) for b in batches for t in b for line in t["lines"]
    )

    # Drop one carried worker record and re-seal the outer chain: the outer chain alone
    # verifies, the sessions' chains and the manifest do not.
    forged = [dict(r) for r in records]
    victim = next(i for i, r in enumerate(forged) if any(t["lines"] for t in r["extra"].get("cluster_tasks", [])))
    batch = [dict(t) for t in forged[victim]["extra"]["cluster_tasks"]]
    cut_task = next(t for t in batch if t["lines"])
    cut_task["lines"] = cut_task["lines"][:-1]
    forged[victim]["extra"] = {**forged[victim]["extra"], "cluster_tasks": batch}
    _reseal(forged, victim)
    bad = tmp_path / "forged.jsonl"
    _write(bad, forged)
    assert verify_file(bad).ok
    result = verify_cluster_records(forged)
    assert not result.ok
    assert any("session" in p for p in result.problems)
    assert glsandbox_main(["audit", "verify", str(bad)]) == 1
    assert "manifest" in capsys.readouterr().out

    # A signed run chain: verified with the key, refused with another.
    keyfile, wrong = tmp_path / "key", tmp_path / "wrong-key"
    keyfile.write_bytes(b"cluster-secret")
    wrong.write_bytes(b"not-the-key")
    signed = tmp_path / "signed.jsonl"
    with SandboxedExecutor(client, STRICT, audit_path=str(signed), audit_key=b"cluster-secret") as ex2:
        assert ex2.submit(square, 2).result() == 4
    assert glsandbox_main(["audit", "verify", str(signed), "--key", str(keyfile)]) == 0
    assert glsandbox_main(["audit", "verify", str(signed), "--key", str(wrong)]) == 1
    assert "signature does not match" in capsys.readouterr().out

    # Cut the manifest off the end: the run is reported as unfinished.
    cut = tmp_path / "cut.jsonl"
    _write(cut, records[:-1])
    assert glsandbox_main(["audit", "verify", str(cut)]) == 1
    assert "no run manifest" in capsys.readouterr().out


def _busy_session(client: Any, timeout: float = 60.0) -> tuple[str, int, list[int]]:
    """Wait until some worker runs a call; its address, pid and the sandbox's pids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address, report in cluster_doctor(client, doctor=False).items():
            busy = [s for s in report["sessions"] if s["state"] == "busy" and s["worker_pids"]]
            if busy:
                return address, report["pid"], [pid for s in busy for pid in s["worker_pids"]]
        time.sleep(0.05)
    raise AssertionError("no call started on the cluster")


def _wait_workers(client: Any, n: int) -> None:
    client.wait_for_workers(n, timeout=60)


def test_worker_killed_mid_call_is_retried(client: Any) -> None:
    with SandboxedExecutor(client, STRICT) as ex:
        future = ex.submit(slow, 3.0, 42)
        address, pid, sandbox_pids = _busy_session(client)
        tree = [pid, *descendants(pid)]
        assert set(sandbox_pids) <= set(tree)
        os.kill(pid, signal.SIGKILL)
        # The killed worker's sandboxes die with it: nothing is left behind.
        assert not wait_gone(tree, timeout=5.0), f"left after SIGKILL: {live_pids(tree)}"
        assert future.result(timeout=90) == 42  # Dask ran it again on a live worker
    _wait_workers(client, 2)
    lost = [r for r in ex.audit.records if r["event_type"] == "worker_crashed"]
    assert len(lost) == 1
    entry = lost[0]["extra"]["cluster_task_lost"]
    assert entry["worker"] == address and entry["outcome"] == "retried"
    done = [t for t in carried_tasks(ex.audit.records) if t["task"] == entry["task"]]
    assert len(done) == 1 and done[0]["worker"] != address
    assert verify_cluster_records(ex.audit.records).ok


def test_worker_killed_mid_call_fails_clearly(client: Any) -> None:
    def set_allowed(dask_scheduler: Any, n: int) -> int:
        old = int(dask_scheduler.allowed_failures)
        dask_scheduler.allowed_failures = n
        return old

    old = client.run_on_scheduler(set_allowed, n=0)
    try:
        with SandboxedExecutor(client, STRICT) as ex:
            future = ex.submit(slow, 3.0, 7)
            _address, pid, _sandbox = _busy_session(client)
            tree = [pid, *descendants(pid)]
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(SandboxCrashedError, match="Dask worker running it died") as crashed:
                future.result(timeout=90)
            assert type(crashed.value.__cause__).__name__ == "KilledWorker"
            assert not wait_gone(tree, timeout=5.0)
    finally:
        client.run_on_scheduler(set_allowed, n=old)
        _wait_workers(client, 2)
    lost = [r["extra"]["cluster_task_lost"] for r in ex.audit.records if r["event_type"] == "worker_crashed"]
    assert [e["outcome"] for e in lost] == ["failed"]
    manifest = ex.audit.records[-1]["extra"]["cluster_manifest"]
    assert manifest["tasks"]["lost"] == 1 and manifest["lost"][0]["outcome"] == "failed"
    assert verify_cluster_records(ex.audit.records).ok


def _notebook(path: Any, sources: list[str]) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return str(path)


def test_notebooks_through_the_cluster(client: Any, tmp_path: Any, capsys: Any) -> None:
    good = [_notebook(tmp_path / f"ok{i}.ipynb", [f"n = {i}", "print('n is', n)"]) for i in range(2)]
    bad = _notebook(tmp_path / "bad.ipynb", ["x = 1", "x / 0", "print('never')"])
    audit = tmp_path / "nb-run.jsonl"
    address = client.scheduler.address
    status = glsandbox_main(["run", "--cluster", address, "--level", "strict", "--audit", str(audit), *good, bad])
    captured = capsys.readouterr()
    report = captured.out + captured.err
    assert status == 1, report  # one notebook failed
    assert "3 notebook(s)" in captured.out and "2 ok, 1 failed" in captured.out, report
    assert "3/3 notebook(s), 1 failed" in captured.err, report  # the progress bar
    for path in good:
        out = path.replace(".ipynb", ".glsandbox.ipynb")
        assert glsandbox_main(["audit", "verify", out]) == 0, capsys.readouterr().out
        import nbformat

        nb = nbformat.read(out, as_version=4)
        assert nb.metadata["glsandbox"]["config"]["cluster_worker"] in client.scheduler_info()["workers"]
        streams = [o for c in nb.cells for o in c.outputs if o.get("output_type") == "stream"]
        assert any("n is" in o["text"] for o in streams)
    assert glsandbox_main(["audit", "verify", str(audit)]) == 0
    text = capsys.readouterr().out
    assert "3 session(s)" in text, text
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    tasks = [t for t in carried_tasks(records) if t["kind"] != "drain"]
    assert sorted(t["detail"]["notebook"] for t in tasks) == sorted([*good, bad])
    assert all(t["kind"] == "notebook" and t["records"] for t in tasks)


def test_several_notebooks_need_cluster(tmp_path: Any, capsys: Any) -> None:
    a = _notebook(tmp_path / "a.ipynb", ["1"])
    b = _notebook(tmp_path / "b.ipynb", ["2"])
    assert glsandbox_main(["run", a, b]) == 2
    assert "need --cluster" in capsys.readouterr().err


def test_exceptions_travel_with_their_details() -> None:
    import pickle

    from glsandbox_kernel import BackendUnavailableError, SandboxMemoryError
    from glsandbox_kernel.distributed.plugin import _ExceptionBox

    backend = BackendUnavailableError("vm", "no /dev/kvm", "enable KVM")
    backend.add_note("seen on worker w1")
    memory = SandboxMemoryError("over the limit", limit=100, peak=150)
    remote = SandboxRemoteError("AgentError", "bad tool", ["Traceback ...", "AgentError: bad tool"])
    for exc in (backend, memory, remote, KeyError("k")):
        back = pickle.loads(pickle.dumps(_ExceptionBox(exc))).exc
        assert type(back) is type(exc) and str(back) == str(exc) and back.args == exc.args
        assert vars(back) == vars(exc)


def test_cluster_started_with_the_dask_cli_and_the_preload(tmp_path: Any) -> None:
    """`dask scheduler` + `dask worker --preload glsandbox_kernel.distributed.preload`, as on several machines."""
    import subprocess
    import sys

    from distributed import Client

    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    scheduler_file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [
            dask,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        **quiet,  # type: ignore[call-overload]
    )
    worker = subprocess.Popen(
        [
            *(dask, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "1", "--nthreads", "1"),
            *("--host", "127.0.0.1", "--no-dashboard", "--preload", "glsandbox_kernel.distributed.preload"),
        ],
        # The test's functions are pickled by reference, as Dask does: the workers import them.
        env={**os.environ, "GLSANDBOX_MAX_SESSIONS": "3", "PYTHONPATH": ROOT},
        **quiet,  # type: ignore[call-overload]
    )
    tree: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with Client(scheduler_file=str(scheduler_file), timeout=60) as c:
            c.wait_for_workers(1, timeout=60)
            (report,) = cluster_doctor(c).values()
            assert report["plugin"] is True and report["max_sessions"] == 3  # installed by the preload
            assert report["doctor"]["default_backend"]
            with SandboxedExecutor(c, STRICT, register_plugin=False) as ex:
                assert ex.submit(square, 7).result() == 49
                tree = [pid for pids in worker_trees(c).values() for pid in pids]
                assert len(tree) > 1  # the worker and its sandbox
                address = c.scheduler.address
                shown = subprocess.run(  # while the run (and so its session) is alive
                    [sys.executable, "-m", "glsandbox_kernel.distributed", "doctor", address],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
            assert shown.returncode == 0, shown.stderr
            assert "plugin yes" in shown.stdout and "default backend:" in shown.stdout
            assert "strict calls 1" in shown.stdout
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # A worker stopped with SIGTERM tears the plugin down: its sandboxes are closed.
    assert not wait_gone(tree, timeout=10.0), f"left: {live_pids(tree)}"


def test_public_surface_and_lazy_import() -> None:
    import subprocess
    import sys

    import glsandbox_kernel.distributed as gd

    assert set(gd.__all__) == {
        "ClusterAudit",
        "carried_tasks",
        "SandboxPlugin",
        "SandboxedExecutor",
        "TaskOutcome",
        "cluster_doctor",
        "sandboxed_submit",
        "verify_cluster_file",
        "verify_cluster_records",
    }
    for name in gd.__all__:
        assert getattr(gd, name) is not None
    # Importing the package (and the audit verifier's hook) does not import Dask.
    code = (
        "import sys, glsandbox_kernel.distributed, glsandbox_kernel.distributed.audit, glsandbox_kernel.audit.cli; "
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
