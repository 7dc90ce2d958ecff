"""The sandbox engine over real worker processes (BASIC backend and the default one)."""

from __future__ import annotations

import datetime as dt
import decimal
import fractions
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from glsandbox_kernel import (
    BackendUnavailableError,
    IsolationType,
    OSSandbox,
    OSSandboxConfig,
    ResourceLimits,
    SandboxConfigError,
    SandboxCrashedError,
    SandboxEscapeError,
    SandboxMemoryError,
    SandboxRemoteError,
    SandboxSecurityError,
    SandboxTimeoutError,
    SecurityLevel,
    create_config_by_level,
    execute_lenient,
    execute_moderate,
    execute_strict,
    sandboxed,
)
from glsandbox_kernel.audit import verify_file

from ..conftest import live_pids, wait_gone, wait_removed

BASIC = IsolationType.BASIC


def basic(**kw: object) -> OSSandboxConfig:
    return OSSandboxConfig(isolation_type=BASIC, **kw)  # type: ignore[arg-type]


# -- the seed summary's tests, as written apart from the import line ----------------------


def test_sandbox_timeout() -> None:
    """Test timeout enforcement"""
    config = OSSandboxConfig(execution_timeout=1)

    with pytest.raises(SandboxTimeoutError):
        with OSSandbox(config) as sandbox:
            sandbox.execute(lambda: time.sleep(5))


def test_memory_limit() -> None:
    """Test memory limit enforcement"""
    config = OSSandboxConfig(limits=ResourceLimits(memory_limit_bytes=100 * 1024 * 1024))

    with pytest.raises(MemoryError):
        with OSSandbox(config) as sandbox:
            sandbox.execute(lambda: [0] * (200 * 1024 * 1024))


def test_escape_detection() -> None:
    """Test escape attempt detection"""
    config = OSSandboxConfig(detect_escape_attempts=True)

    def escape_attempt():  # type: ignore[no-untyped-def]
        import subprocess

        subprocess.run(["ptrace", "attach", str(os.getpid())])

    with pytest.raises(SandboxEscapeError):
        with OSSandbox(config) as sandbox:
            sandbox.execute(escape_attempt)


# -- state, results, errors ---------------------------------------------------------------


def test_state_persists_across_calls_and_cells() -> None:
    counter = {"n": 0}

    def bump() -> int:
        import builtins

        builtins.__dict__.setdefault("_glsb_counter", 0)
        builtins._glsb_counter += 1  # type: ignore[attr-defined]
        return int(builtins._glsb_counter)  # type: ignore[attr-defined]

    with OSSandbox(basic()) as box:
        pid = box.execute(os.getpid)
        assert [box.execute(bump) for _ in range(3)] == [1, 2, 3]
        assert box.execute(os.getpid) == pid != os.getpid()
        r1 = box.run_cell("total = 40")
        r2 = box.run_cell("total + 2")
        assert r1.status == r2.status == "ok"
        assert r2.outputs[-1]["data"]["text/plain"] == "42"
        assert r2.execution_count == 2
    assert counter["n"] == 0  # nothing ran on the host


def test_allowed_result_types_round_trip() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")

    def make() -> object:
        import datetime as dt
        import decimal
        import fractions

        import numpy as np
        import pandas as pd

        return {
            "t": (1, 2.5, 3j, "s", b"b", None, True),
            "set": {1, 2},
            "fs": frozenset({"a"}),
            "big": 2**100,
            "when": dt.datetime(2026, 1, 2, 3, 4, 5),
            "day": dt.date(2026, 1, 2),
            "dur": dt.timedelta(days=1, seconds=3),
            "dec": decimal.Decimal("1.10"),
            "frac": fractions.Fraction(1, 3),
            "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
            "scalar": np.int64(7),
            "df": pd.DataFrame({"fuel": ["diesel", "petrol"], "co2": [2.68, 2.31]}),
            "series": pd.Series([1.0, 2.0], name="kg"),
        }

    with OSSandbox(basic()) as box:
        v = box.execute(make)
    assert v["t"] == (1, 2.5, 3j, "s", b"b", None, True)
    assert v["set"] == {1, 2} and v["fs"] == frozenset({"a"}) and v["big"] == 2**100
    assert v["when"] == dt.datetime(2026, 1, 2, 3, 4, 5) and v["day"] == dt.date(2026, 1, 2)
    assert v["dur"] == dt.timedelta(days=1, seconds=3)
    assert v["dec"] == decimal.Decimal("1.10") and v["frac"] == fractions.Fraction(1, 3)
    assert v["arr"].dtype == np.float32 and v["arr"].shape == (2, 3) and v["arr"][1, 2] == 5
    assert v["scalar"] == 7 and isinstance(v["scalar"], np.int64)
    assert list(v["df"]["fuel"]) == ["diesel", "petrol"] and v["df"]["co2"].iloc[0] == 2.68
    assert v["series"].name == "kg"
    assert isinstance(v["df"], pd.DataFrame)


def test_builtin_exceptions_round_trip_with_sandbox_traceback() -> None:
    def fail() -> None:
        def inner() -> None:
            raise KeyError("missing-factor")

        inner()

    with OSSandbox(basic()) as box:
        with pytest.raises(ZeroDivisionError) as zde:
            box.execute(lambda: 1 / 0)
        with pytest.raises(KeyError) as ke:
            box.execute(fail)
        assert "inner" in "".join(ke.value.sandbox_traceback)  # type: ignore[attr-defined]
        assert any("Traceback inside the sandbox" in n for n in zde.value.__notes__)

        class Custom(Exception):
            pass

        def custom() -> None:
            raise Custom("mine")

        with pytest.raises(SandboxRemoteError) as ce:
            box.execute(custom)
        assert ce.value.ename == "Custom" and ce.value.evalue == "mine"
        assert box.execute(lambda: "still alive") == "still alive"


def test_malicious_result_class_is_refused_and_never_runs_on_host(tmp_path: object) -> None:
    marker = os.path.join(str(tmp_path), "pwned")

    def evil() -> object:
        class Evil:
            def __reduce__(self) -> tuple[object, ...]:
                return (os.system, (f"touch {marker}",))

        return [1, Evil()]

    with OSSandbox(basic()) as box:
        with pytest.raises(SandboxSecurityError, match="Evil"):
            box.execute(evil)
        assert box.execute(lambda: 5) == 5
    assert not os.path.exists(marker)


def _oversize_past_the_workers_own_check() -> bytes:
    """SANDBOX side, hostile: lift the worker's own reply cap (advisory), then send too much."""
    import gc

    from glsandbox_kernel.protocol import FrameChannel

    for obj in gc.get_objects():
        if isinstance(obj, FrameChannel):
            obj.max_send = None
    return b"x" * 200_000


def test_oversize_frame_kills_worker_and_raises() -> None:
    with OSSandbox(basic(max_frame_bytes=64 * 1024)) as box:
        pid = box.execute(os.getpid)
        # A cooperative worker refuses a reply over the host's cap itself: a clean error, state kept.
        with pytest.raises(SandboxMemoryError):
            box.execute(lambda: b"x" * 200_000)
        assert box.execute(os.getpid) == pid
        # Hostile code that lifts that check meets the host's own cap: refused, worker killed.
        with pytest.raises(SandboxSecurityError, match="exceeds the cap"):
            box.execute(_oversize_past_the_workers_own_check)
        assert wait_gone([pid]) == []
        assert box.execute(lambda: 1 + 1) == 2  # a fresh worker


def test_malformed_frame_from_hostile_code_kills_worker() -> None:
    def forge() -> None:
        import os
        import socket
        import stat

        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    s = socket.socket(fileno=os.dup(fd))
                    s.sendall(b"\x00\x00\x00\x05QQQQQ")
            except OSError:
                pass
        import time

        time.sleep(5)

    with OSSandbox(basic(execution_timeout=10)) as box:
        pid = box.execute(os.getpid)
        with pytest.raises(SandboxSecurityError, match="malformed"):
            box.execute(forge)
        assert wait_gone([pid]) == []


# -- limits -----------------------------------------------------------------------------------


def test_timeout_kills_whole_tree_and_next_call_gets_fresh_worker() -> None:
    def spawn_and_hang() -> None:
        import subprocess
        import time

        subprocess.Popen(["sleep", "60"])
        # a setsid double-fork daemon
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        time.sleep(60)

    with OSSandbox(basic(execution_timeout=1.5)) as box:
        box.execute(lambda: None)
        box.run_cell("state = 1")
        before = set(box.worker_pids)
        ended = threading.Event()

        def watch() -> None:  # every pid of the tree while the call runs (a loaded host forks slowly)
            while not ended.wait(0.05):
                before.update(box.worker_pids)

        t = threading.Thread(target=watch)
        t.start()
        try:
            with pytest.raises(SandboxTimeoutError, match=r"1\.5 s timeout.*state is lost"):
                box.execute(spawn_and_hang)
        finally:
            ended.set()
            t.join()
        assert len(before) >= 3  # worker, sleep, daemon
        assert wait_gone(list(before)) == []
        r = box.run_cell("state")
        assert r.status == "error" and r.error_name == "NameError"
        assert box.metrics.state_lost


def test_memory_limit_raised_inside_reports_limit_and_peak() -> None:
    cfg = basic(limits=ResourceLimits(memory_limit_bytes=200 * 1024 * 1024))
    with OSSandbox(cfg) as box:
        with pytest.raises(SandboxMemoryError) as exc:
            box.execute(lambda: bytearray(400 * 1024 * 1024))
        assert exc.value.limit == 200 * 1024 * 1024
        assert exc.value.peak is not None and exc.value.peak > 0
        assert "200.0 MiB" in str(exc.value)
        assert box.execute(lambda: 3) == 3


def test_cpu_time_limit_kills_with_clear_reason() -> None:
    # 1 s of CPU took 3.5-5.2 s of wall time at load 18: the wall-clock timeout only has to stay far behind it
    cfg = basic(limits=ResourceLimits(cpu_time_limit_seconds=1), execution_timeout=120)

    def spin() -> None:
        while True:
            pass

    with OSSandbox(cfg) as box:
        with pytest.raises(SandboxCrashedError, match="CPU time limit"):
            box.execute(spin)


def _interrupt_once_ignoring(box: OSSandbox, pid: int, sig: int) -> None:
    """Interrupt ``box`` once its worker ``pid`` ignores ``sig`` (the call's sign that it runs)."""
    while True:
        status = Path(f"/proc/{pid}/status").read_text()
        ignored = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
        if int(ignored.split()[1], 16) & (1 << (sig - 1)):
            box.interrupt()
            return
        time.sleep(0.02)


def test_interrupt_stops_loop_and_session_survives() -> None:
    def loop() -> None:
        import signal

        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the mark: the loop is about to run
        while True:
            sum(range(1000))

    def on_output(msg: dict[str, object]) -> None:
        if "looping" in str(msg.get("text", "")):
            box.interrupt()  # the cell's loop runs

    with OSSandbox(basic()) as box:
        box.run_cell("kept = 'yes'")
        pid = box.execute(os.getpid)
        # not after a fixed delay: an interrupt sent before the call started is dropped
        threading.Thread(target=_interrupt_once_ignoring, args=(box, pid, signal.SIGUSR2), daemon=True).start()
        with pytest.raises(KeyboardInterrupt) as info:
            box.execute(loop)
        assert "state is lost" not in str(info.value)  # the loop stopped, the worker was not killed
        r = box.run_cell("kept")
        assert r.outputs[-1]["data"]["text/plain"] == "'yes'"
        r = box.run_cell("print('looping', flush=True)\nwhile True: pass", on_output=on_output)
        assert r.status == "error" and r.error_name == "KeyboardInterrupt" and not r.state_lost
        assert box.execute(os.getpid) == pid


def test_interrupt_of_sigint_ignoring_code_kills_after_grace() -> None:
    def stubborn() -> None:
        import signal
        import time

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(30)

    with OSSandbox(basic(interrupt_grace_seconds=0.5)) as box:
        pid = box.execute(os.getpid)
        # not before: a loaded host can take longer than a fixed delay
        threading.Thread(target=_interrupt_once_ignoring, args=(box, pid, signal.SIGINT), daemon=True).start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt, match="state is lost"):
            box.execute(stubborn)
        assert time.monotonic() - t0 < 25  # killed after the grace period, not slept through (30 s)
        assert wait_gone([pid]) == []
        assert box.execute(lambda: 1) == 1


# -- isolation basics ----------------------------------------------------------------------------


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret-123")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("JPY_SESSION_NAME", "x")
    from glsandbox_kernel import zygote

    # a fresh template so it is started from this (secret-laden) environment
    z = zygote._ZYGOTES.pop(sys.executable, None)
    if z is not None:
        z.close()
    with OSSandbox(basic()) as box:
        env = box.execute(lambda: dict(os.environ))
        environ_file = box.execute(lambda: open("/proc/self/environ", "rb").read())

        def parent_environ() -> bytes:
            try:
                with open(f"/proc/{os.getppid()}/environ", "rb") as fh:
                    return fh.read()
            except OSError:  # the template is not dumpable, or not visible at all
                return b""

        zygote_env_readable = box.execute(parent_environ)
        cwd = box.execute(os.getcwd)
        umask = box.execute(lambda: (os.umask(0o022), os.umask(0o077))[0])
    for secret in (b"host-secret-123", b"ghp_secret"):
        assert secret not in environ_file and secret not in zygote_env_readable
    assert "AWS_SECRET_ACCESS_KEY" not in env and "GITHUB_TOKEN" not in env and "JPY_SESSION_NAME" not in env
    assert env["HOME"] == cwd and cwd != os.getcwd()
    assert umask == 0o077
    assert wait_removed([cwd]) == []  # private working directory removed after close


def test_no_new_privs_and_own_session() -> None:
    with OSSandbox(basic()) as box:
        status = box.execute(lambda: open("/proc/self/status").read())
        sid = box.execute(lambda: os.getsid(0))
    assert "NoNewPrivs:\t1" in status
    assert sid != os.getsid(0)


def test_no_leftovers_when_the_host_process_dies() -> None:
    code = textwrap.dedent(
        """
        import os, sys, json
        from glsandbox_kernel import OSSandbox, OSSandboxConfig, IsolationType
        box = OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC))
        def spawn():
            import subprocess
            subprocess.Popen(["sleep", "60"])
            return os.getpid()
        box.execute(spawn)
        from glsandbox_kernel.zygote import _ZYGOTES
        z = _ZYGOTES[sys.executable]
        print(json.dumps([z.proc.pid] + box.worker_pids), flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pids = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(pids) >= 3  # template, worker, sleep
    assert wait_gone(pids, timeout=10) == []


def test_close_leaves_nothing() -> None:
    box = OSSandbox(basic())
    box.execute(lambda: subprocess.Popen(["sleep", "60"]) and None)
    pids = box.worker_pids
    cwd = box.execute(os.getcwd)
    assert live_pids(pids)
    box.close()
    assert wait_gone(pids) == []
    assert wait_removed([cwd]) == []


# -- cells --------------------------------------------------------------------------------------


def test_run_cell_outputs() -> None:
    code = textwrap.dedent(
        """
        import sys
        from IPython.display import display, HTML, clear_output
        print("to stdout"); print("to stderr", file=sys.stderr)
        display(HTML("<b>bold</b>"), metadata={"k": 1})
        display({"application/json": {"a": 1}}, raw=True)
        h = display("first", display_id="d1")
        h.update("second")
        6 * 7
        """
    )
    seen: list[dict[str, object]] = []
    with OSSandbox(basic()) as box:
        r = box.run_cell(code, on_output=seen.append)
        kinds = [o["output_type"] for o in r.outputs]
        assert r.status == "ok"
        assert {"output_type": "stream", "name": "stdout", "text": "to stdout\n"} in r.outputs
        assert any(o.get("name") == "stderr" for o in r.outputs)
        html = [o for o in r.outputs if o["output_type"] == "display_data" and "text/html" in o["data"]]
        assert html and html[0]["metadata"] == {"k": 1}
        assert any("application/json" in o.get("data", {}) for o in r.outputs)
        assert kinds[-1] == "execute_result" and r.outputs[-1]["data"]["text/plain"] == "42"
        assert any(m["type"] == "update_display_data" for m in seen)
        err = box.run_cell("def f():\n    raise ValueError('bad factor')\nf()")
        assert err.status == "error" and err.error_name == "ValueError" and err.error_value == "bad factor"
        assert any("bad factor" in line for line in err.traceback or [])
        cleared = box.run_cell("print('a')\nfrom IPython.display import clear_output\nclear_output()\nprint('b')")
        assert [o.get("text") for o in cleared.outputs] == ["b\n"]


def test_matplotlib_figure_is_png() -> None:
    pytest.importorskip("matplotlib")
    with OSSandbox(basic(execution_timeout=120)) as box:
        r = box.run_cell("import matplotlib.pyplot as plt\nplt.bar(['a','b'],[1,2])\nplt.show()")
    assert r.status == "ok", r.traceback
    pngs = [o for o in r.outputs if o["output_type"] == "display_data" and "image/png" in o["data"]]
    assert pngs
    import base64

    assert base64.b64decode(pngs[0]["data"]["image/png"]).startswith(b"\x89PNG")


def test_complete_inspect_is_complete() -> None:
    with OSSandbox(basic()) as box:
        box.run_cell("emission_factor = 2.68")
        # The first completion imports jedi and infers the builtins: 18 s on a loaded 2-core host (0.3 s
        # after), and a quick request's timeout kills the worker; what is proven here is the answer.
        msg = {"type": "complete", "code": "emission_f", "cursor_pos": 10}
        c = box.request(msg, "complete_reply", timeout=180.0)
        assert "emission_factor" in c["matches"]
        i = box.request({"type": "inspect", "code": "emission_factor", "cursor_pos": 5}, "inspect_reply")
        assert i["found"] and "float" in i["data"]["text/plain"]
        assert (
            box.request({"type": "is_complete", "code": "for i in x:"}, "is_complete_reply")["status"] == "incomplete"
        )
        assert box.request({"type": "is_complete", "code": "x = 1"}, "is_complete_reply")["status"] == "complete"


# -- one-shot helpers, decorator, config -----------------------------------------------------------


def square(x: int) -> int:
    return x * x


def test_one_shot_helpers_and_decorator() -> None:
    assert execute_lenient(square, 3) == 9
    assert execute_moderate(square, 4) == 16
    assert execute_strict(square, 5) == 25

    @sandboxed("strict")
    def where() -> int:
        return os.getpid()

    assert where() != os.getpid()

    @sandboxed(persistent=True)
    def where2() -> int:
        return os.getpid()

    assert where2() == where2() != os.getpid()
    where2.__wrapped__  # noqa: B018 - functools.wraps keeps the original
    box = where2.__closure__  # the persistent box is closed explicitly below
    assert box is not None
    for cell in box:
        contents = cell.cell_contents
        if isinstance(contents, dict) and "box" in contents:
            contents["box"].close()


def test_config_validation_names_field_and_range() -> None:
    with pytest.raises(SandboxConfigError, match="memory_limit_bytes"):
        ResourceLimits(memory_limit_bytes=-1)
    with pytest.raises(SandboxConfigError, match="execution_timeout: must be > 0"):
        OSSandboxConfig(execution_timeout=0)
    with pytest.raises(SandboxConfigError, match="isolation_type: 'docker' is not one of"):
        OSSandboxConfig(isolation_type="docker")  # type: ignore[arg-type]
    with pytest.raises(SandboxConfigError, match="allowed_hosts"):
        from glsandbox_kernel import NetworkConfig

        NetworkConfig(allowed_hosts=("example.org",))
    strict = create_config_by_level(SecurityLevel.STRICT)
    assert not strict.new_programs_allowed and strict.network.mode == "none"
    assert create_config_by_level("lenient").network.mode == "any"
    with pytest.raises(Exception, match="cannot assign"):
        strict.execution_timeout = 5  # type: ignore[misc]


def test_explicit_unavailable_backend_raises_or_falls_back_and_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GLSANDBOX_VM_IMAGE", str(tmp_path))  # no guest image there: VM unavailable
    with pytest.raises(BackendUnavailableError, match="vm"):
        OSSandbox(OSSandboxConfig(isolation_type=IsolationType.VM))
    with OSSandbox(OSSandboxConfig(isolation_type=IsolationType.VM, fallback_to_basic=True)) as box:
        assert box.execute(lambda: 2) == 2
        assert box.isolation_type == "basic"
        assert box.metrics.fallback and "vm" in box.metrics.fallback
        events = [r["event_type"] for r in box.audit_records]
        assert events[:2] == ["session_start", "fallback"]


# -- metrics and audit -------------------------------------------------------------------------------


def test_memory_peak_is_each_calls_own() -> None:
    """A call's peak is its own: after a call that allocated and freed, a trivial call reads a small
    peak (the window was reset), and a later allocation is seen again whether or not a reset was
    needed before it (none is written while the last reading's peak was the usage itself)."""

    def alloc(n: int) -> int:
        data = bytearray(n)
        data[::4096] = b"x" * len(data[::4096])
        return len(data)

    mib = 1024 * 1024
    with OSSandbox(basic()) as box:
        box.execute(alloc, 64 * mib)
        big = box.metrics.memory_peak_bytes
        box.execute(alloc, 1)
        small = box.metrics.memory_peak_bytes
        box.execute(alloc, 1)
        again = box.metrics.memory_peak_bytes
        box.execute(alloc, 64 * mib)
        big_again = box.metrics.memory_peak_bytes
    assert big is not None and big >= 64 * mib, big
    assert small is not None and small < 32 * mib, small
    assert again is not None and again < 32 * mib, again
    assert big_again is not None and big_again >= 64 * mib, big_again


def test_metrics_are_measured_outside_and_none_when_not_measured() -> None:
    def burn() -> int:
        t = time.process_time()
        x = 0
        while time.process_time() - t < 0.3:
            x += 1
        data = bytearray(80 * 1024 * 1024)
        return len(data)

    with OSSandbox(basic()) as box:
        box.execute(burn)
        m = box.metrics
    assert m.cpu_time_used is not None and m.cpu_time_used >= 0.25
    assert m.memory_peak_bytes is not None and m.memory_peak_bytes >= 80 * 1024 * 1024
    assert m.execution_time is not None and m.execution_time >= 0.3
    assert m.network_bytes_sent is None and m.network_bytes_received is None
    assert m.syscalls_made is None
    # BASIC's own cgroup where the host can make one (root here), else /proc.
    from glsandbox_kernel.confinement.cgroups import CgroupV1, available

    ok, why = available()
    assert m.measured_by == (f"cgroup-v{CgroupV1.version if why.startswith('cgroup v1') else 2}" if ok else "procfs")


def test_audit_log_file_chain_verifies_and_detects_tampering(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "audit.jsonl")
    with OSSandbox(basic(audit_log_path=path)) as box:
        box.execute(square, 2)
        with pytest.raises(ZeroDivisionError):
            box.execute(lambda: 1 / 0)
        with pytest.raises(SandboxSecurityError):
            box.execute(lambda: object())
        box.run_cell("1 + 1")
    with OSSandbox(basic(audit_log_path=path)) as box:  # a second session continues the chain
        box.execute(square, 3)
    records = [json.loads(line) for line in open(path)]
    events = [r["event_type"] for r in records]
    assert events.count("session_start") == 2 and events.count("session_end") == 2
    assert "execution_error" in events and "execution_success" in events
    assert all(r["provenance_hash"] for r in records if r["event_type"].startswith("execution"))
    assert verify_file(path).ok
    lines = open(path).read().splitlines()
    edited = json.loads(lines[1])
    edited["execution_time"] = 0.0
    lines[1] = json.dumps(edited)
    bad = os.path.join(str(tmp_path), "bad.jsonl")
    open(bad, "w").write("\n".join(lines) + "\n")
    result = verify_file(bad)
    assert not result.ok and result.first_bad is not None
    proc = subprocess.run(
        [sys.executable, "-m", "glsandbox_kernel.cli", "audit", "verify", bad], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "record 2" in proc.stdout + proc.stderr


def test_provenance_hash_covers_code_inputs_and_config() -> None:
    with OSSandbox(basic()) as a, OSSandbox(basic(execution_timeout=5)) as b:
        a.execute(square, 2)
        a.execute(square, 3)
        b.execute(square, 2)
        ha = [r["provenance_hash"] for r in a.audit_records if r["event_type"] == "execution_success"]
        hb = [r["provenance_hash"] for r in b.audit_records if r["event_type"] == "execution_success"]
    assert ha[0] != ha[1] and ha[0] != hb[0]


def test_print_inside_function_reaches_host_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    def talk() -> int:
        print("hello from the sandbox")
        os.system("echo from a subprocess")
        return 1

    with OSSandbox(basic()) as box:
        box.execute(talk)
    out = capsys.readouterr().out
    assert "hello from the sandbox" in out and "from a subprocess" in out


def test_worker_killed_from_outside_is_a_crash_with_signal() -> None:
    with OSSandbox(basic()) as box:
        pid = box.execute(os.getpid)
        with pytest.raises(SandboxCrashedError, match="SIGKILL"):
            box.execute(lambda: os.kill(os.getpid(), signal.SIGKILL))
        assert wait_gone([pid]) == []
        assert box.execute(lambda: 7) == 7


def test_code_importable_from_a_project_under_tmp(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project folder under /tmp (CI clones live there) stays importable inside the
    default backend's private /tmp, read-only. The host's sys.path is not what the
    sandbox sees: the project folder is (see tests/jupyter/test_project_folder.py)."""
    project = os.path.join(str(tmp_path), "proj")
    os.makedirs(project)
    with open(os.path.join(project, "glsb_factors.py"), "w") as fh:
        fh.write("DIESEL_KG_PER_L = 2.68\n")
    monkeypatch.syspath_prepend(project)
    os.environ.pop("GLSANDBOX_WARM_POOL", None)

    def use() -> tuple[float, bool]:
        import glsb_factors  # type: ignore[import-not-found]

        writable = os.access(glsb_factors.__file__, os.W_OK)
        return glsb_factors.DIESEL_KG_PER_L, writable

    from glsandbox_kernel import FilesystemConfig

    with OSSandbox(OSSandboxConfig(filesystem=FilesystemConfig(project_dir=project))) as box:
        value, writable = box.execute(use)
    assert value == 2.68 and not writable


def _tree_call() -> int:
    """A call that runs a child for two seconds: long enough for the monitor to sample it."""
    proc = subprocess.Popen(["sleep", "2"])
    return proc.wait()


def test_sessions_share_one_host_loop_thread_that_still_monitors_each_call() -> None:
    boxes = [OSSandbox(basic()) for _ in range(6)]
    try:
        for box in boxes:
            assert box.execute(abs, -1) == 1
        names = [t.name for t in threading.enumerate()]
        # No monitor or audit committer thread per session: the process's one host loop runs them.
        assert not [n for n in names if n.startswith(("glsandbox-monitor", "glsandbox-audit"))], names
        assert names.count("glsandbox-hostloop") == 1, names
        results: list[int] = []
        threads = [threading.Thread(target=lambda b=b: results.append(b.execute(_tree_call))) for b in boxes[:3]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [0, 0, 0]
        # Each of the three concurrent calls was sampled from outside (worker + its child): none was starved.
        for box in boxes[:3]:
            assert box.metrics.pids_peak is not None and box.metrics.pids_peak >= 2, box.metrics
    finally:
        for box in boxes:
            box.close()


# -- the warm call's fast path (issue 14): functions by reference, interrupts without masks ------


def test_functions_travel_once_by_reference_and_again_to_a_new_worker() -> None:
    def inc(x: int) -> int:
        return x + 1

    def dec(x: int) -> int:
        return x - 1

    with OSSandbox(basic()) as box:
        session = box.session
        assert [box.execute(inc, 1), box.execute(dec, 1), box.execute(inc, 5), box.execute(dec, 5)] == [2, 0, 6, 4]
        assert len(session._fn_refs) == 2
        # More functions than a worker keeps by reference: the host starts afresh and says so.
        fns = [eval(f"lambda: {i}") for i in range(70)]  # distinct functions, each by value
        assert [box.execute(fn) for fn in fns] == list(range(70))
        assert [box.execute(fn) for fn in fns[-3:]] == [67, 68, 69]
        box.restart()  # a new worker holds none of them: the first call sends the function again
        assert box.execute(inc, 9) == 10 and box.execute(inc, 10) == 11


def test_interrupts_while_idle_are_dropped_even_after_user_code_sets_its_own_handler() -> None:
    def spin() -> None:
        while True:
            sum(range(1000))

    def own_handler() -> int:
        import signal

        signal.signal(signal.SIGINT, signal.default_int_handler)
        return os.getpid()

    with OSSandbox(basic()) as box:
        pid = box.execute(os.getpid)
        for handler_set in (False, True):
            if handler_set:
                assert box.execute(own_handler) == pid
            for _ in range(3):  # between calls: dropped, the worker and its state are kept
                os.kill(pid, signal.SIGINT)
                time.sleep(0.05)
                assert box.execute(os.getpid) == pid
            threading.Timer(0.3, box.interrupt).start()
            with pytest.raises(KeyboardInterrupt):
                box.execute(spin)
            assert box.execute(os.getpid) == pid
