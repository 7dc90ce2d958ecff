"""A kernel cell's limit verdict: the display and the audit record give one verdict on one limit.

Found: with ``%%sandbox --memory 100M`` a ``MemoryError`` was shown against the cell's 100 MiB while
its record judged it against the session's 256 MiB; the per-cell guard's own kill (the cell passed its
``--memory``) was recorded ``worker_crashed``; a SIGXCPU the cell sent itself after half of its 1 s
``--cpu-time`` was named the CPU limit. Judged from the host: the guard decides once, on the cell's
limits and what the host measured, and ``run_cell`` records that verdict (``judge``); a SIGXCPU is the
CPU limit only when the cell's CPU time read outside reached it. Real kernels over ZMQ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from glsandbox_kernel import OSSandbox

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, stdout_of
from .test_outside_false_limit_verdicts import _audit, _config, kernel  # a kernel at --memory 256M, with its audit log

__all__ = ["glsandbox_kernelspec", "kernel"]  # the fixtures, imported for pytest

CELL_LIMIT = "the cell's memory limit of 100.0 MiB"


def test_a_cells_memory_error_is_judged_on_the_cells_limit_in_its_record(kernel: Kernel) -> None:
    kernel.execute("kept = 'state'")
    reply, outputs = kernel.execute("%%sandbox --memory 100M\nraise MemoryError('x')")
    assert reply["ename"] == "MemoryError" and CELL_LIMIT in reply["traceback"][-1], reply
    record = _audit(outputs)
    assert record["event_type"] == "execution_error", record
    assert CELL_LIMIT in record["extra"]["error"], record["extra"]["error"]  # the limit the display named
    assert "256.0 MiB" not in record["extra"]["error"]
    assert stdout_of(kernel.execute("print(kept)")[1]) == "state\n"


def test_the_guards_memory_kill_is_recorded_as_the_memory_limit(kernel: Kernel) -> None:
    code = (
        "%%sandbox --memory 100M\n"
        "import resource, time\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (hard, hard))\n"  # lifts the cell's rlimit: the guard kills
        "blob = b'x' * (220 * 1024 * 1024)\n"
        "time.sleep(10)"
    )
    reply, outputs = kernel.execute(code, timeout=60)
    assert reply["ename"] == "SandboxMemoryError" and "measured outside" in reply["evalue"], reply
    record = _audit(outputs)
    assert record["event_type"] == "memory_exceeded", record
    exceeded = record["extra"]["limit_exceeded"]
    assert exceeded["limit"] == "memory" and exceeded["value"] == 100 * 2**20, exceeded
    assert exceeded["measured"] > 100 * 2**20, exceeded  # the peak the guard measured
    assert kernel.execute("1")[0]["status"] == "ok"


def test_a_sigxcpu_after_half_the_cells_cpu_limit_is_the_cells_own(kernel: Kernel) -> None:
    code = (
        "%%sandbox --cpu-time 1\n"
        "import os, signal, time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.7: pass\n"
        "os.kill(os.getpid(), signal.SIGXCPU)"
    )
    reply, outputs = kernel.execute(code, timeout=60)
    assert reply["ename"] == "SandboxCrashedError", reply
    assert "sent from inside" in reply["evalue"] and "under its --cpu-time 1 s" in reply["evalue"], reply
    record = _audit(outputs)
    assert record["event_type"] == "worker_crashed" and "limit_exceeded" not in record["extra"], record
    assert "sent from inside" in record["extra"]["error"]  # the record says what the display says
    assert kernel.execute("1")[0]["status"] == "ok"


def test_a_real_cpu_overrun_is_the_cells_cpu_limit_in_display_and_record(kernel: Kernel) -> None:
    reply, outputs = kernel.execute("%%sandbox --cpu-time 1\nwhile True: pass", timeout=60)
    assert reply["ename"] == "SandboxCPUTimeError" and "CPU time limit of 1 s" in reply["evalue"], reply
    record = _audit(outputs)
    exceeded = record["extra"]["limit_exceeded"]
    assert exceeded["limit"] == "cpu_time" and exceeded["value"] == 1 and exceeded["measured"] >= 0.95, exceeded
    assert kernel.execute("1")[0]["status"] == "ok"


@pytest.mark.parametrize("backend", ["namespace", "basic"])
def test_the_librarys_cell_result_shows_the_verdict_its_record_gives(backend: str, tmp_path: Path) -> None:
    """``run_cell`` (and so the magic, which raises its result): the host's note on a MemoryError its
    code raised is in the result's traceback as in its record; the worker and its state are kept."""
    with OSSandbox(_config(backend, tmp_path / "audit.jsonl")) as box:
        box.run_cell("kept = 'state'")
        result = box.run_cell("raise MemoryError('x')")
        assert result.error_name == "MemoryError" and not result.error_by_host, result
        note = (result.traceback or [""])[-1]
        assert note.startswith("glsandbox: the sandbox reported MemoryError; the host measured a peak of"), note
        assert note in (result.audit_record or {})["extra"]["error"]
        assert box.run_cell("print(kept)").outputs[0]["text"] == "state\n"
