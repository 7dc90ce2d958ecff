"""Outside review: the sandbox could make the host claim a limit was hit when it was not.

Attack: a cell that runs ``raise MemoryError("x")`` (a few MiB in use) was shown by
the kernel as ``SandboxMemoryError: the cell exceeded the sandbox's memory limit``
and audited ``memory_exceeded``; the library's ``run_cell`` audited it
``memory_exceeded`` too, and ``execute`` raised ``SandboxMemoryError``. A cell with
``%%sandbox --cpu-time`` that raised its own ``SandboxCrashedError("... SIGXCPU")``
was shown as ``SandboxCPUTimeError`` (the CPU limit) though it used no CPU.

Judged from the host: a limit verdict (``SandboxMemoryError`` / ``memory_exceeded``,
``SandboxCPUTimeError``) rests on what the host measured (the peak at the limit, the
cgroup's OOM kill, the guard's kill, the CPU time read outside); a ``MemoryError``
raised inside without it stays the code's own (name, value, traceback) with a note
of what the host measured. A real allocation over the limit is still the limit.

Real kernels over ZMQ and the library API, on the namespace and basic backends.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel import (
    IsolationType,
    OSSandbox,
    OSSandboxConfig,
    SandboxCrashedError,
    SandboxMemoryError,
    create_config_by_level,
    execute_moderate,
)
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.kernel.install import install_kernelspecs, kernel_spec

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, stdout_of

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest

LIMIT = 256 * 2**20
BACKENDS = ["namespace", "basic"]
AUDIT_MIME = "application/vnd.glsandbox.audit+json"
FORGED_SIGXCPU = (
    "%%sandbox --cpu-time 5\n"
    "class SandboxCrashedError(Exception):\n"
    "    pass\n"
    "raise SandboxCrashedError('the sandbox worker died during a call (signal SIGXCPU); its state is lost')"
)


def _available(backend: str) -> None:
    ok, why = backends()[backend].available()
    if not ok:
        pytest.skip(f"{backend}: {why}")


def _config(backend: str, audit: Path) -> OSSandboxConfig:
    _available(backend)
    cfg = create_config_by_level("moderate", isolation_type=IsolationType(backend), audit_log_path=str(audit))
    return dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, memory_limit_bytes=LIMIT))


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


# -- the library API ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_memory_error_raised_inside_is_the_codes_own(backend: str, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"

    def raises() -> None:
        raise MemoryError("x")

    with OSSandbox(_config(backend, audit)) as box:
        box.run_cell("kept = 'state'")
        result = box.run_cell("raise MemoryError('x')")
        assert result.status == "error" and result.error_name == "MemoryError" and result.error_value == "x"
        assert not result.error_by_host and not result.state_lost
        assert any("MemoryError" in line for line in result.traceback or [])
        record = result.audit_record or {}
        assert record.get("event_type") == "execution_error", record
        assert "the host measured a peak of" in record["extra"]["error"], record
        with pytest.raises(MemoryError) as info:
            box.execute(raises)
        assert type(info.value) is MemoryError and str(info.value) == "x"
        assert any("the host measured a peak of" in note for note in info.value.__notes__)
        assert box.run_cell("print(kept)").outputs[0]["text"] == "state\n"
    events = [r["event_type"] for r in _records(audit)]
    assert "memory_exceeded" not in events, events


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_real_allocation_over_the_limit_is_still_the_limit(backend: str, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    with OSSandbox(_config(backend, audit)) as box:
        result = box.run_cell("blob = b'x' * (400 * 2**20)")
        assert result.status == "error" and result.error_name == "SandboxMemoryError", result.error_value
        assert result.error_by_host
        assert (result.audit_record or {}).get("event_type") == "memory_exceeded"
        with pytest.raises(SandboxMemoryError) as info:
            box.execute(lambda: b"x" * (400 * 2**20))
        assert info.value.limit == LIMIT
        assert box.execute(lambda: 3) == 3
    assert [r["event_type"] for r in _records(audit)].count("memory_exceeded") == 2


def test_execute_moderate_keeps_a_raised_memory_error() -> None:
    def raises() -> None:
        raise MemoryError("x")

    with pytest.raises(MemoryError) as info:
        execute_moderate(raises)
    assert type(info.value) is MemoryError and str(info.value) == "x"


# -- the kernel, over ZMQ ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def kernel(request: pytest.FixtureRequest, glsandbox_kernelspec: str) -> Iterator[Kernel]:
    backend = request.param
    _available(backend)
    prefix = os.path.dirname(os.path.dirname(glsandbox_kernelspec))  # .../share/jupyter: on JUPYTER_PATH
    name = f"glsandbox-verdicts-{backend}"
    with tempfile.TemporaryDirectory(prefix="glsandbox-verdicts-") as tmp:
        argv = ["--SandboxKernel.memory=256M", f"--SandboxKernel.audit_log={tmp}/audit.jsonl"]
        install_kernelspecs([(name, kernel_spec(isolation=backend, extra_argv=argv))], prefix=prefix)
        k = Kernel(name)
        try:
            yield k
        finally:
            k.shutdown()


def _audit(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(
        m["content"]["data"][AUDIT_MIME]["record"]
        for m in outputs
        if m["msg_type"] == "display_data" and AUDIT_MIME in m["content"]["data"]
    )


def _plain(lines: list[str]) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(lines))


@pytest.mark.parametrize("options", ["", "%%sandbox --memory 100M\n"])
def test_kernel_a_memory_error_raised_inside_is_the_codes_own(kernel: Kernel, options: str) -> None:
    kernel.execute("kept = 'state'")
    reply, outputs = kernel.execute(options + "raise MemoryError('x')")
    assert reply["status"] == "error" and reply["ename"] == "MemoryError" and reply["evalue"] == "x", reply
    *traceback, note = reply["traceback"]
    assert "raise MemoryError('x')" in _plain(traceback)  # the code's own traceback
    assert note.startswith("glsandbox: the sandbox reported MemoryError; the host measured a peak of"), note
    record = _audit(outputs)
    assert record["event_type"] == "execution_error", record
    assert stdout_of(kernel.execute("print(kept)")[1]) == "state\n"


def test_kernel_a_real_allocation_over_the_limit_is_still_the_limit(kernel: Kernel) -> None:
    reply, outputs = kernel.execute("blob = b'x' * (400 * 2**20)", timeout=120)
    assert reply["status"] == "error" and reply["ename"] == "SandboxMemoryError", reply
    assert _audit(outputs)["event_type"] == "memory_exceeded"
    assert kernel.execute("1")[0]["status"] == "ok"


def test_kernel_the_sigxcpu_text_from_inside_is_no_cpu_verdict(kernel: Kernel) -> None:
    kernel.execute("kept = 'state'")
    reply, outputs = kernel.execute(FORGED_SIGXCPU)
    assert reply["status"] == "error" and reply["ename"] == "SandboxCrashedError", reply  # the code's own class
    assert "SIGXCPU" in reply["evalue"] and "CPU time limit" not in reply["evalue"]
    assert _audit(outputs)["event_type"] == "execution_error"
    assert stdout_of(kernel.execute("print(kept)")[1]) == "state\n"  # nothing was killed


def test_kernel_a_sigxcpu_sent_from_inside_is_no_cpu_verdict(kernel: Kernel) -> None:
    reply, outputs = kernel.execute("%%sandbox --cpu-time 5\nimport os, signal\nos.kill(os.getpid(), signal.SIGXCPU)")
    assert reply["status"] == "error" and reply["ename"] != "SandboxCPUTimeError", reply
    assert "CPU time limit of 5 s" not in reply["evalue"], reply
    assert "limit_exceeded" not in _audit(outputs)["extra"]
    assert kernel.execute("1")[0]["status"] == "ok"


def test_kernel_a_real_cpu_overrun_is_still_the_cpu_limit(kernel: Kernel) -> None:
    reply, _ = kernel.execute("%%sandbox --cpu-time 1\nwhile True: pass", timeout=60)
    assert reply["status"] == "error" and reply["ename"] == "SandboxCPUTimeError", reply
    assert "CPU time limit of 1 s" in reply["evalue"] and "measured outside" in reply["evalue"]
    assert kernel.execute("1")[0]["status"] == "ok"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sigxcpu_sent_from_inside_without_a_cpu_limit_is_no_cpu_verdict(backend: str, tmp_path: Path) -> None:
    def kills_itself() -> None:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGXCPU)

    cfg = _config(backend, tmp_path / "audit.jsonl")
    cfg = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, cpu_time_limit_seconds=None))
    with OSSandbox(cfg) as box:
        with pytest.raises(SandboxCrashedError) as info:
            box.execute(kills_itself)
        assert info.value.reason != "cpu_time" and "SIGXCPU" in str(info.value), info.value
        assert box.execute(lambda: 3) == 3
