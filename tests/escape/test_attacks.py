"""Attacks through the real surfaces, asserted from the host side (issue 11).

Each test runs the attack as a user of that surface would meet it: the
``%%sandbox`` magic in a stock ``python3`` IPython kernel over
jupyter_client, a real ``glsandbox`` kernel over ZMQ, or the library, on the
BASIC and NAMESPACE backends (a backend this host lacks is skipped with the
reason from ``available()``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from glsandbox_kernel.backends.registry import backends

from ..conftest import wait_gone
from ..jupyter_fixtures import Kernel, descendants, glsandbox_kernelspec, kernel_made, notices_of, stderr_of, stdout_of

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest


def _backend(name: str) -> Any:
    ok, reason = backends()[name].available()
    return pytest.param(name, marks=() if ok else pytest.mark.skip(reason=f"{name}: {reason}"))


BACKENDS = [_backend("basic"), _backend("namespace")]


@pytest.fixture(scope="module")
def ipykernel() -> Iterator[Kernel]:
    """A stock python3 IPython kernel with the magic loaded; its sandbox tree is gone after."""
    k = Kernel("python3")
    tree: list[int] = []
    try:
        reply, _ = k.execute("%load_ext glsandbox_kernel")
        assert reply["status"] == "ok", reply
        yield k
        tree = descendants(k.pid)
    finally:
        k.shutdown()
    assert not wait_gone(tree, timeout=15)


def _stop_sessions(k: Kernel) -> None:
    reply, _ = k.execute("%sandbox stop")
    assert reply["status"] == "ok"


# -- 1. --out writes exactly the names asked for; --in sends exactly the named data ------------------------

_OUT_ATTACK = """\
%%sandbox strict --isolation {backend} --out totals
import glsandbox_kernel.magics.sandbox_side as s
_orig = s.sandbox_side_get_names
s.sandbox_side_get_names = lambda n: {{**_orig(n), {extra}}}
totals = {{"co2": 1.0}}
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "extra",
    ['"budget_approved": True', '"print": 1', "1: 2", '"totals": 1, "__builtins__": {}'],
    ids=["flag", "builtin", "int-key", "builtins"],
)
def test_out_cannot_write_other_host_names(ipykernel: Kernel, backend: str, extra: str) -> None:
    k = ipykernel
    try:
        reply, _ = k.execute("budget_approved = False\ntotals = 'host'")
        assert reply["status"] == "ok"
        reply, outputs = k.execute(_OUT_ATTACK.format(backend=backend, extra=extra))
        assert reply["status"] == "error" and reply["ename"] == "SandboxSecurityError", reply
        assert "nothing was copied" in reply["evalue"]
        reply, outputs = k.execute(
            "print(budget_approved, totals, print is __builtins__.print, 1 in globals(), type(__builtins__).__name__)"
        )
        assert reply["status"] == "ok", reply
        assert stdout_of(outputs) == "False host True False module\n", stderr_of(outputs)
        # The refusal is in the session's audit chain, written by the host.
        reply, outputs = k.execute("%sandbox audit")
        assert "hash chain verified" in stdout_of(outputs) and "violation" in stdout_of(outputs)
        # An honest --out in the same session still works (the sandbox's helper was replaced only
        # in that worker's module; a fresh session gets a fresh one).
        _stop_sessions(k)
        reply, outputs = k.execute(f"%%sandbox strict --isolation {backend} --out totals\ntotals = {{'co2': 2.5}}")
        assert reply["status"] == "ok", reply
        reply, outputs = k.execute("print(totals)")
        assert stdout_of(outputs) == "{'co2': 2.5}\n"
    finally:
        _stop_sessions(k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_reply_that_is_not_the_values_is_refused(ipykernel: Kernel, backend: str) -> None:
    k = ipykernel
    try:
        k.execute("totals = 'host'")
        code = (
            f"%%sandbox strict --isolation {backend} --out totals\n"
            "import glsandbox_kernel.magics.sandbox_side as s\n"
            "s.sandbox_side_get_names = lambda n: [('smuggled', True)]\n"
            "totals = 1"
        )
        reply, _ = k.execute(code)
        assert reply["status"] == "error" and reply["ename"] == "SandboxSecurityError", reply
        reply, outputs = k.execute("print(totals, 'smuggled' in globals())")
        assert stdout_of(outputs) == "host False\n"
    finally:
        _stop_sessions(k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_sends_only_the_named_data(ipykernel: Kernel, backend: str) -> None:
    """cloudpickle would send a host function with the globals it uses: --in takes data only."""
    k = ipykernel
    try:
        reply, _ = k.execute(
            "host_secret = 'hunter2'\ndef report():\n    return host_secret\nclass Box:\n    token = host_secret\n"
            "box = Box()\nrows = [1, 2, 3]"
        )
        assert reply["status"] == "ok"
        reply, _ = k.execute(f"%%sandbox strict --isolation {backend} --name keep\nkept = 7")
        assert reply["status"] == "ok", reply
        for name in ("report", "box", "Box"):
            reply, outputs = k.execute(f"%%sandbox strict --isolation {backend} --name keep --in {name}\n1")
            assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
            assert "cannot be copied into the sandbox" in reply["evalue"]
        # Nothing went in, and the session (its state) was not touched by the failed cells.
        code = (
            f"%%sandbox strict --isolation {backend} --name keep --in rows\n"
            "import gc\n"
            "print(kept, rows, [n for n in ('report', 'box', 'Box', 'host_secret') if n in globals()],\n"
            "      any(isinstance(o, str) and 'hunter2' in o for o in gc.get_objects()))"
        )
        reply, outputs = k.execute(code)
        assert reply["status"] == "ok", reply
        assert stdout_of(outputs) == "7 [1, 2, 3] [] False\n", stderr_of(outputs)
    finally:
        _stop_sessions(k)


def test_failed_option_leaves_the_session_alone(ipykernel: Kernel) -> None:
    """A usage error (an unavailable backend) must not close the named session and its state."""
    missing = [n for n, cls in sorted(backends().items()) if not cls.available()[0]]
    if not missing:
        pytest.skip("every registered backend is available here, so none fails to start")
    k = ipykernel
    try:
        reply, _ = k.execute("%%sandbox --name keep\nstate = 41")
        assert reply["status"] == "ok", reply
        pids = descendants(k.pid)
        reply, outputs = k.execute(f"%%sandbox --isolation {missing[0]} --name keep\nstate = 0")
        assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
        assert "unavailable" in reply["evalue"]
        reply, outputs = k.execute("%%sandbox --name keep\nprint(state + 1)")
        assert reply["status"] == "ok", reply
        assert stdout_of(outputs) == "42\n", stderr_of(outputs)
        assert "state is lost" not in stderr_of(outputs) + notices_of(outputs)
        assert set(pids) <= set(descendants(k.pid))  # the same worker
    finally:
        _stop_sessions(k)


# -- 5. host-side decoding floods ------------------------------------------------------------------------

#: Sandbox side: write one hand-made frame straight onto the worker's socket (no set is built in
#: the sandbox, so the worker pays nothing), then wait to be killed.
_FLOOD = r"""
import gc, struct, time
from glsandbox_kernel.worker.loop import Connection
conn = next(o for o in gc.get_objects() if isinstance(o, Connection))
def s(t):
    b = t.encode()
    return b"s" + struct.pack(">I", len(b)) + b
def big(n):
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)
    return b"I" + struct.pack(">I", len(raw)) + raw
N = {n}
P = 2**61 - 1
body = {body}
payload = b"d" + struct.pack(">I", 2) + s("type") + s("stream") + s("text") + body
with conn.lock:
    conn.chan.sock.sendall(struct.pack(">I", len(payload)) + payload)
time.sleep(60)
"""

FLOODS = {
    # a set of ints that all hash to 0 (quadratic to build): ~1.5 MB
    "colliding-set": (100_000, 'b"S" + struct.pack(">I", N) + b"".join(big(k * P) for k in range(1, N + 1))'),
    # the same as dict keys
    "colliding-dict": (
        100_000,
        'b"d" + struct.pack(">I", N) + b"".join(big(k * P) + b"N" for k in range(1, N + 1))',
    ),
    # 8 MiB of empty sets, lists and dicts (5 bytes each on the wire, 64-216 bytes each decoded)
    "empty-sets": (8 * 2**20 // 5, 'b"l" + struct.pack(">I", N) + b"S\\0\\0\\0\\0" * N'),
    "empty-lists": (8 * 2**20 // 5, 'b"l" + struct.pack(">I", N) + b"l\\0\\0\\0\\0" * N'),
    "empty-dicts": (8 * 2**20 // 5, 'b"l" + struct.pack(">I", N) + b"d\\0\\0\\0\\0" * N'),
}


def _flood_code(kind: str) -> str:
    n, body = FLOODS[kind]
    return _FLOOD.format(n=n, body=body)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_decoding_flood_is_refused_and_the_host_stays_responsive(backend: str, kind: str) -> None:
    import threading
    import time

    from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level

    config = create_config_by_level(SecurityLevel.STRICT, isolation_type=backend, execution_timeout=3.0)
    beats: list[float] = []
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            beats.append(time.monotonic())
            time.sleep(0.01)

    with OSSandbox(config) as sandbox:
        assert sandbox.run_cell("1").status == "ok"
        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        t0 = time.monotonic()
        try:
            result = sandbox.run_cell(_flood_code(kind))
        finally:
            t1 = time.monotonic()
            stop.set()
            thread.join()
        assert result.status == "error"
        assert result.error_name == "SandboxSecurityError", (result.error_name, result.error_value)
        assert "refused a value from the worker" in (result.error_value or "")
        assert not sandbox.session.alive  # the session killed the worker
        during = [b for b in beats if t0 <= b <= t1]
        gaps = [b - a for a, b in zip([t0, *during], [*during, t1], strict=True)]
        # The host decoded linearly and refused: it never stalled for the call's timeout
        # (before the budget, one such frame held it 12-43 s against a 3 s timeout).
        assert max(gaps) < config.execution_timeout, max(gaps)
        records = sandbox.audit_records
        assert "SandboxSecurityError" in records[-1]["extra"].get("error", "")


_MEMORY_PROBE = r"""
import json, resource, sys
from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level
config = create_config_by_level(SecurityLevel.STRICT, isolation_type=sys.argv[1], execution_timeout=20.0)
code = sys.stdin.read()
with OSSandbox(config) as sandbox:
    sandbox.run_cell("1")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = sandbox.run_cell(code)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before": before * 1024, "after": after * 1024, "error": result.error_name, "why": result.error_value}))
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["empty-sets", "empty-lists", "empty-dicts"])
def test_decoding_flood_stays_within_a_memory_bound(backend: str, kind: str, tmp_path: Any) -> None:
    """8 MiB of empty containers grew the host by ~390 MiB; the budget bounds it by the frame."""
    import json
    import os
    import subprocess
    import sys

    from glsandbox_kernel.codec import DEFAULT_BUDGET

    from ..conftest import ROOT

    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, backend],
        input=_flood_code(kind),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] == "SandboxSecurityError"
    frame = 8 * 2**20
    bound = DEFAULT_BUDGET.ratio * frame + DEFAULT_BUDGET.floor + 4 * frame  # decoded values + frame copies
    grown = out["after"] - out["before"]
    print(out["why"])
    print(f"{kind} on {backend}: host peak grew by {grown / 2**20:.0f} MiB (bound {bound / 2**20:.0f} MiB)")
    assert grown < bound


# -- 6. the glsandbox kernel always answers ----------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def gkernel(request: pytest.FixtureRequest, glsandbox_kernelspec: str) -> Iterator[Kernel]:
    """A real glsandbox kernel over ZMQ on one backend."""
    k = Kernel("glsandbox", extra_arguments=[f"--SandboxKernel.isolation={request.param}"])
    tree: list[int] = []
    try:
        yield k
        tree = descendants(k.pid)
    finally:
        k.shutdown()
    assert not wait_gone(tree, timeout=15)


def _still_works(k: Kernel) -> None:
    reply, outputs = k.execute("print(6 * 7)")
    assert reply["status"] == "ok", reply
    assert stdout_of(outputs) == "42\n"


_PAGE = (
    "get_ipython().payload_manager.write_payload({{'source': 'page', 'data': {{'text/plain': {value}}}, 'start': 0}})"
)

REPLY_BREAKERS = {
    "payload-huge-int": (_PAGE.format(value="10**5000"), "integer of"),
    "payload-surrogate": (_PAGE.format(value="'a\\ud800b'"), "lone surrogates"),
    "payload-non-str-keys-nan-bytes": (_PAGE.format(value="{1: b'x', (2, 3): float('nan')}"), "NaN"),
    "payload-deep": (
        "d = 'leaf'\nfor _ in range(3000):\n    d = [d]\n" + _PAGE.format(value="d"),
        "nest",
    ),
    "error-surrogate": ("raise ValueError('bad \\ud800 value')", "lone surrogates"),
    "user-expressions": (
        "get_ipython().user_expressions = lambda e: {'x': {'status': 'ok', 'data': {'text/plain': 10**5000}, "
        "'metadata': {'\\udfff': float('inf')}}}",
        None,  # broken on the next cell, which asks for user_expressions
    ),
}


@pytest.mark.parametrize("case", sorted(REPLY_BREAKERS))
def test_kernel_always_sends_a_valid_reply(gkernel: Kernel, case: str) -> None:
    code, noted = REPLY_BREAKERS[case]
    reply, outputs = gkernel.execute(code, timeout=60)
    assert reply["status"] in ("ok", "error"), reply
    if case == "error-surrogate":
        assert (reply["status"], reply["ename"]) == ("error", "ValueError")
        assert reply["evalue"] == "bad \\ud800 value"
    if case == "user-expressions":
        reply, outputs = gkernel.execute("1", user_expressions={"x": "1"}, timeout=60)
        assert reply["status"] == "ok", reply
        assert reply["user_expressions"]["x"]["data"]["text/plain"].startswith("<int of")
        noted = "integer of"
    if case.startswith("payload"):
        assert reply["status"] == "ok" and reply["payload"], reply
    assert noted in notices_of(outputs), notices_of(outputs)
    _still_works(gkernel)


OUTPUT_BREAKERS = {
    "stream-surrogate": ("import sys; sys.stdout.write('out \\ud800\\n')", "out \\ud800\n"),
    "display-huge-int-metadata": (
        "from IPython.display import display\ndisplay({'text/plain': 'shown'}, metadata={'n': 10**5000}, raw=True)",
        None,
    ),
    "display-surrogate-key": (
        "from IPython.display import display\ndisplay({'text/plain': 'shown', 'x/\\udc80': 'k'}, raw=True)",
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_BREAKERS))
def test_kernel_sends_every_output_and_notes_what_it_replaced(gkernel: Kernel, case: str) -> None:
    code, stdout = OUTPUT_BREAKERS[case]
    reply, outputs = gkernel.execute(code, timeout=60)
    assert reply["status"] == "ok", reply
    if stdout is not None:
        assert stdout_of(outputs) == stdout
    else:
        shown = [m for m in outputs if m["msg_type"] == "display_data" and not kernel_made(m)]
        assert shown and shown[0]["content"]["data"]["text/plain"] == "shown"
    assert "were replaced" in notices_of(outputs)
    # The cell's audit output is there: its record was written.
    assert any(
        "application/vnd.glsandbox.audit+json" in m["content"].get("data", {})
        for m in outputs
        if m["msg_type"] == "display_data"
    )
    _still_works(gkernel)


# -- 7. kernel-owned comms ------------------------------------------------------------------------------

_FORGE_COMM = r"""
import gc
from glsandbox_kernel.worker.loop import Connection
conn = next(o for o in gc.get_objects() if isinstance(o, Connection))
for cid in {ids!r}:
    conn.send({{"type": "comm_msg", "content": {{"comm_id": cid, "data": {{"method": "update",
               "state": {{"value": "forged by the sandbox"}}}}}}, "metadata": {{}}, "buffers": []}})
    conn.send({{"type": "comm_close", "content": {{"comm_id": cid, "data": {{"forged": True}}}}, "metadata": {{}},
               "buffers": []}})
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_sandbox_cannot_speak_on_comms_it_did_not_open(glsandbox_kernelspec: str, backend: str) -> None:
    k = Kernel(
        "glsandbox",
        extra_arguments=[f"--SandboxKernel.isolation={backend}", "--SandboxKernel.monitor_widgets=always"],
    )
    tree: list[int] = []
    try:
        reply, outputs = k.execute("import time; time.sleep(2)", timeout=60)
        assert reply["status"] == "ok", reply
        own = [m["content"]["comm_id"] for m in outputs if m["msg_type"] == "comm_open"]
        assert own, "the kernel opened no monitor widget comm"
        # A widget the sandbox opens itself keeps working.
        reply, outputs = k.execute("import ipywidgets as w\ns = w.IntSlider(3)\ns", timeout=60)
        assert reply["status"] == "ok", reply
        mine = [
            m["content"]["comm_id"]
            for m in outputs
            if m["msg_type"] == "comm_open" and m["content"]["comm_id"] not in own and not kernel_made(m)
        ]
        assert mine
        reply, outputs = k.execute(_FORGE_COMM.format(ids=[*own, "never-opened-" + "0" * 20]), timeout=60)
        forged = [
            m
            for m in outputs
            if m["msg_type"] in ("comm_msg", "comm_close") and "forged" in repr(m["content"].get("data"))
        ]
        assert not forged, forged
        # Recorded: a violation of the running call (enforcing: the cell fails), in its audit record.
        assert reply["status"] == "error" and reply["ename"] == "SandboxViolationError", reply
        assert "comm" in reply["evalue"] and "dropped" in reply["evalue"]
        audit = next(
            m["content"]["data"]["application/vnd.glsandbox.audit+json"]
            for m in outputs
            if m["msg_type"] == "display_data" and "application/vnd.glsandbox.audit+json" in m["content"]["data"]
        )
        assert "comm" in repr(audit)
        # The sandbox's own widget still speaks.
        reply, outputs = k.execute("s.value = 5", timeout=60)
        assert reply["status"] == "ok", reply
        assert any(m["msg_type"] == "comm_msg" and m["content"]["comm_id"] in mine for m in outputs)
        tree = descendants(k.pid)
    finally:
        k.shutdown()
    assert not wait_gone(tree, timeout=15)


# -- 3. violations reach the audit chain when they happen; no content stops a record -------------------------

_LATE_PTRACE = """
import ctypes, threading, time
def later():
    time.sleep(0.3)
    ctypes.CDLL(None, use_errno=True).ptrace(16, 1, 0, 0)  # PTRACE_ATTACH to pid 1, after the cell returned
threading.Thread(target=later, daemon=True).start()
"""


def _wait_for(predicate: Any, timeout: float = 15.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def _file_records(path: Any) -> list[dict[str, Any]]:
    import json

    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_violation_after_the_call_returned_is_recorded_and_blames_no_one(backend: str, tmp_path: Any) -> None:
    from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level
    from glsandbox_kernel.audit import verify_file

    log = tmp_path / "audit.jsonl"
    config = create_config_by_level(SecurityLevel.STRICT, isolation_type=backend, audit_log_path=str(log))
    with OSSandbox(config) as sandbox:
        first = sandbox.run_cell(_LATE_PTRACE)
        assert first.status == "ok" and not first.violations  # nothing happened during the call
        # Written to the chain (the file, fsynced) at once, while the session is still open.
        live = _wait_for(lambda: [r for r in _file_records(log) if (r.get("extra") or {}).get("live")])
        assert live, [r["event_type"] for r in _file_records(log)]
        assert live[0]["event_type"] == "escape_attempt"
        (violation,) = live[0]["violations"]
        assert violation["syscall"] == "ptrace" and violation["trusted"] is True
        assert violation["session_id"] == sandbox.session_id and violation["call_id"] is None
        # The next, innocent call does not carry the blame.
        innocent = sandbox.run_cell("print('innocent')")
        assert innocent.status == "ok", innocent.error_value
        assert not innocent.violations
        assert sandbox.execute(int, "7") == 7
    records = _file_records(log)
    kinds = [r["event_type"] for r in records]
    assert kinds[0] == "session_start" and kinds[-1] == "session_end"
    assert kinds.count("escape_attempt") == 1, kinds  # the innocent calls were successes
    assert records[-1]["metrics"]["violations_detected"] == 1
    assert records[-1]["metrics"]["escape_attempts"] == 1
    assert verify_file(log).ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_violation_during_a_call_is_written_at_once_and_attributed(backend: str, tmp_path: Any) -> None:
    from glsandbox_kernel import OSSandbox, SandboxMode, SecurityLevel, create_config_by_level

    log = tmp_path / "audit.jsonl"
    config = create_config_by_level(
        SecurityLevel.STRICT, isolation_type=backend, audit_log_path=str(log), sandbox_mode=SandboxMode.PERMISSIVE
    )
    code = "import ctypes, time\nctypes.CDLL(None).ptrace(16, 1, 0, 0)\nwhile True: time.sleep(0.05)"
    with OSSandbox(config) as sandbox:
        import threading

        done: list[Any] = []
        runner = threading.Thread(target=lambda: done.append(sandbox.run_cell(code, timeout=60)), daemon=True)
        runner.start()
        # While the call still runs, its violation is already in the file.
        live = _wait_for(lambda: [r for r in _file_records(log) if (r.get("extra") or {}).get("live")])
        assert live and not done
        call_id = live[0]["violations"][0]["call_id"]
        assert isinstance(call_id, int)
        sandbox.interrupt()
        runner.join(30)
        result = done[0]
    cell = next(r for r in _file_records(log) if (r.get("extra") or {}).get("kind") == "cell")
    assert cell["extra"]["call_id"] == call_id
    assert [v["syscall"] for v in cell["violations"]] == ["ptrace"]
    assert result.violations and result.violations[0]["call_id"] == call_id


CONTENT_BREAKERS = {
    "stream-surrogate": "print('a\\ud800b')",
    "display-surrogate": "from IPython.display import display\ndisplay({'text/plain': 'x\\udcff'}, raw=True)",
    "error-surrogate": "raise ValueError('bad \\ud800')",
    "bytes-and-huge-int": "from IPython.display import display\ndisplay({'text/plain': 'ok'}, metadata={'n': 10**5000},"
    " raw=True)\nb'\\xff\\xfe'",
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CONTENT_BREAKERS))
def test_no_cell_content_stops_its_audit_record(backend: str, case: str, tmp_path: Any) -> None:
    from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level
    from glsandbox_kernel.audit import verify_file

    log = tmp_path / "audit.jsonl"
    config = create_config_by_level(SecurityLevel.STRICT, isolation_type=backend, audit_log_path=str(log))
    with OSSandbox(config) as sandbox:
        result = sandbox.run_cell(CONTENT_BREAKERS[case])
        assert result.audit_record is not None
        after = sandbox.run_cell("1")
        assert after.status == "ok" and after.audit_record is not None
    records = _file_records(log)
    cells = [r for r in records if (r.get("extra") or {}).get("kind") == "cell"]
    assert len(cells) == 2, [r["event_type"] for r in records]
    extra = cells[0]["extra"]
    if "surrogate" in case:
        # Recorded: hashed the normal way (the canonical encoder takes lone surrogates), or marked
        # where it could not be computed the normal way.
        assert "outputs" in extra or "outputs_evidence_error" in extra or "audit_fallback" in extra, extra
    assert verify_file(log).ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_function_error_text_stops_its_audit_record(backend: str, tmp_path: Any) -> None:
    from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level
    from glsandbox_kernel.audit import verify_file

    def hostile() -> None:
        raise ValueError("\ud800 lone")

    log = tmp_path / "audit.jsonl"
    config = create_config_by_level(SecurityLevel.STRICT, isolation_type=backend, audit_log_path=str(log))
    with OSSandbox(config) as sandbox, pytest.raises(ValueError):
        sandbox.execute(hostile)
    records = _file_records(log)
    errors = [r for r in records if r["event_type"] == "execution_error"]
    assert errors and "audit_fallback" in errors[0]["extra"]
    assert "\\ud800" in errors[0]["extra"]["error"]
    assert verify_file(log).ok


# -- 4. enforcing stops the code at once; code that will not stop is killed --------------------------------

_PTRACE_THEN_GO_ON = (
    "import ctypes, time\nctypes.CDLL(None).ptrace(16, 1, 0, 0)\nprint('went on')\nkept = 2\ntime.sleep(30)"
)
_PTRACE_AND_IGNORE_THE_STOP = (
    "import ctypes, signal\nfor s in range(1, 65):\n    try:\n        signal.signal(s, signal.SIG_IGN)\n"
    "    except (OSError, ValueError):\n        pass\nctypes.CDLL(None).ptrace(16, 2, 0, 0)\nwhile True:\n    pass"
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_enforcing_stops_the_call_at_once_and_keeps_the_state(backend: str) -> None:
    from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level

    config = create_config_by_level(SecurityLevel.STRICT, isolation_type=backend, execution_timeout=60.0)
    with OSSandbox(config) as sandbox:
        assert sandbox.run_cell("kept = 1").status == "ok"
        pids = sandbox.worker_pids
        result = sandbox.run_cell(_PTRACE_THEN_GO_ON)
        assert result.status == "error" and result.error_name == "SandboxEscapeError"
        assert "stopped at once" in (result.error_value or "")
        assert result.enforcement == "stopped"
        assert not any("went on" in str(o.get("text")) for o in result.outputs)  # the next line never ran
        assert any(o.get("ename") == "SandboxStopped" for o in result.outputs)  # raised in the sandboxed code
        assert result.audit_record is not None
        assert result.audit_record["extra"]["enforcement"] == "stopped"
        assert result.audit_record["event_type"] == "escape_attempt"
        # Stopped, not killed: the same worker, its state as the stop left it.
        after = sandbox.run_cell("print(kept)")
        assert after.status == "ok" and not after.state_lost
        assert after.outputs[0]["text"] == "1\n"
        assert sandbox.worker_pids[:1] == pids[:1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_violation_in_two_calls_is_recorded_and_stopped_twice(backend: str, tmp_path: Any) -> None:
    """The supervisor's flood limit must not swallow a later call's violation (same pid, same ptrace, < 1 s)."""
    from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level

    log = tmp_path / "audit.jsonl"
    config = create_config_by_level(
        SecurityLevel.STRICT, isolation_type=backend, execution_timeout=60.0, audit_log_path=str(log)
    )
    with OSSandbox(config) as sandbox:
        results = [sandbox.run_cell(_PTRACE_THEN_GO_ON) for _ in range(2)]
    for result in results:
        assert result.status == "error" and result.error_name == "SandboxEscapeError", result.error_value
        assert result.enforcement == "stopped"
        assert not any("went on" in str(o.get("text")) for o in result.outputs)
        assert [v["syscall"] for v in result.violations] == ["ptrace"]
        assert result.violations[0]["trusted"] is True
    assert results[0].violations[0]["call_id"] != results[1].violations[0]["call_id"]
    records = _file_records(log)
    live = [r for r in records if (r.get("extra") or {}).get("kind") == "violation"]
    cells = [r for r in records if (r.get("extra") or {}).get("kind") == "cell"]
    assert [r["event_type"] for r in live + cells] == ["escape_attempt"] * 4, [r["event_type"] for r in records]
    assert sorted(r["extra"]["call_id"] for r in live) == sorted(r["extra"]["call_id"] for r in cells)
    assert len({r["extra"]["call_id"] for r in live}) == 2
    assert records[-1]["metrics"]["violations_detected"] == 2


_PTRACE_FLOOD = "import ctypes\nlibc = ctypes.CDLL(None)\nfor _ in range(10000):\n    libc.ptrace(16, 1, 0, 0)\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_flood_of_violations_gives_bounded_records_that_count_the_rest(backend: str) -> None:
    """10k denied ptrace calls in one call: a few records, the rest counted in ``repeats``."""
    from glsandbox_kernel import OSSandbox, SandboxMode, SecurityLevel, create_config_by_level
    from glsandbox_kernel.supervisor import SupervisorPolicy

    config = create_config_by_level(
        SecurityLevel.STRICT, isolation_type=backend, execution_timeout=120.0, sandbox_mode=SandboxMode.PERMISSIVE
    )
    with OSSandbox(config) as sandbox:
        flood = sandbox.run_cell(_PTRACE_FLOOD + "print('all denied')")
        assert flood.status == "ok", flood.error_value
        assert flood.outputs[-1]["text"] == "all denied\n"  # every one was denied (EPERM), none hung
        after = sandbox.run_cell("import ctypes\nctypes.CDLL(None).ptrace(16, 1, 0, 0)")
    records = flood.violations
    burst = SupervisorPolicy().burst
    # Bounded: the burst, then one a second, and one summary when the call ended.
    assert burst <= len(records) < burst + 60, len(records)
    assert all(r["syscall"] == "ptrace" and r["trusted"] is True for r in records)
    # Every one counted: each record is one, plus the repeats suppressed before it; the summary
    # written when the call ended holds only repeats.
    assert sum((0 if r.get("summary") else 1) + r.get("repeats", 0) for r in records) == 10000
    assert records[-1].get("summary") is True and records[-1]["repeats"] > 0
    assert flood.metrics.violations_detected == 10000
    # The next call's first ptrace is recorded again, on its own.
    assert [v["syscall"] for v in after.violations] == ["ptrace"] and "repeats" not in after.violations[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_enforcing_kills_code_that_does_not_stop(backend: str) -> None:
    from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level

    config = create_config_by_level(SecurityLevel.STRICT, isolation_type=backend, execution_timeout=60.0)
    with OSSandbox(config) as sandbox:
        assert sandbox.run_cell("kept = 1").status == "ok"
        result = sandbox.run_cell(_PTRACE_AND_IGNORE_THE_STOP)
        assert result.status == "error" and result.error_name == "SandboxEscapeError"
        assert "were killed and its state is lost" in (result.error_value or "")
        assert result.enforcement == "killed"
        assert not sandbox.session.alive
        assert result.audit_record is not None and result.audit_record["extra"]["enforcement"] == "killed"
        after = sandbox.run_cell("kept")
        assert after.status == "error" and after.error_name == "NameError" and after.state_lost


def test_enforcing_banner_and_reply_in_the_kernel_say_killed(glsandbox_kernelspec: str) -> None:
    from ..jupyter_fixtures import notices_of

    k = Kernel("glsandbox-strict")
    tree: list[int] = []
    try:
        reply, outputs = k.execute(_PTRACE_AND_IGNORE_THE_STOP, timeout=90)
        assert reply["status"] == "error" and reply["ename"] == "SandboxEscapeError", reply
        assert "were killed" in reply["evalue"]
        banners = [
            m["content"]["data"]["text/plain"]
            for m in outputs
            if m["msg_type"] in ("display_data", "update_display_data")
            and "glsandbox-violations" in m["content"]["data"].get("text/html", "")
        ]
        assert banners and "the worker was killed and its state is lost" in banners[-1], banners
        assert "was stopped" not in banners[-1]
        assert "state is lost" in notices_of(outputs), [(m["msg_type"], str(m["content"])[:300]) for m in outputs]
        tree = descendants(k.pid)
    finally:
        k.shutdown()
    assert not wait_gone(tree, timeout=15)


# -- rootless: the same attacks as an unprivileged user ------------------------------------------------------

#: the library attacks (the Jupyter ones need a kernelspec and runtime dirs of that user), on BASIC and
#: NAMESPACE (BASIC as uid 65534 shares its uid with the host: see tests/backends/test_rootless.py).
ROOTLESS = "flood or violation or no_cell or no_function or enforcing_stops or enforcing_kills or two_calls"


@pytest.mark.unprivileged
@pytest.mark.timeout(1600)  # the whole rerun: above the inner run's own bound
def test_attacks_as_unprivileged_user() -> None:
    from ..conftest import rerun_as_unprivileged

    proc = rerun_as_unprivileged(__file__, "-x", "-k", ROOTLESS, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


def test_quick_replies_always_serialize(gkernel: Kernel) -> None:
    """A cell that makes completion answer with a lone surrogate must not silence the kernel."""
    code = (
        "from IPython.core.completer import Completion\n"
        "get_ipython().Completer.completions = lambda text, offset: iter([Completion(0, len(text), 'ab\\ud800c')])"
    )
    reply, _ = gkernel.execute(code, timeout=60)
    assert reply["status"] == "ok", reply
    msg_id = gkernel.kc.complete("ab", 2)
    content = gkernel.shell_reply(msg_id)["content"]
    assert content["status"] == "ok" and content["matches"] == ["ab\\ud800c"], content
    _still_works(gkernel)


def _start_threads(n: int) -> int:
    """SANDBOX side: start ``n`` idle threads and keep them (a process-limit attack)."""
    import threading
    import time

    stop = threading.Event()
    started = [threading.Thread(target=stop.wait, args=(60,), daemon=True) for _ in range(n)]
    for t in started:
        t.start()
    time.sleep(10)
    return len(started)


@pytest.mark.skipif(os.geteuid() != 0, reason="as an unprivileged user RLIMIT_NPROC holds a BASIC worker already")
def test_basic_as_root_is_held_to_max_processes_from_outside() -> None:
    """uid 0 is never limited by RLIMIT_NPROC: BASIC's own cgroup refuses the task past the limit
    (pids.max, at clone), or where none can be made the outside monitor counts the tasks and kills."""
    from glsandbox_kernel import OSSandbox, SandboxCrashedError, create_config_by_level
    from glsandbox_kernel.confinement import cgroups

    config = create_config_by_level("strict", isolation_type="basic")
    assert config.limits.max_processes == 16
    with OSSandbox(config) as sandbox:
        if cgroups.available()[0]:
            with pytest.raises(RuntimeError, match="can't start new thread"):
                sandbox.execute(_start_threads, 100)
            assert sandbox.metrics.pids_peak is not None and sandbox.metrics.pids_peak <= 16
        else:
            with pytest.raises(SandboxCrashedError) as info:
                sandbox.execute(_start_threads, 100)
            assert info.value.reason == "pids", info.value
            assert "max_processes of 16" in str(info.value)
            assert sandbox.metrics.pids_peak is not None and sandbox.metrics.pids_peak > 16
        assert sandbox.execute(len, [1, 2]) == 2  # the session goes on (a fresh worker after a kill)
