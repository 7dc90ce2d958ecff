"""The %%sandbox / %sandbox magics: in-process IPython for the quick cases, one real ipykernel.

Every cell really runs in a sandboxed worker (no mocks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from glsandbox_kernel import exceptions
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.magics import SandboxCellError

from ..conftest import wait_gone
from ..jupyter_fixtures import Kernel, descendants, stderr_of, stdout_of

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext glsandbox_kernel", store_history=False)
    try:
        yield ip
    finally:
        ip.run_cell("%unload_ext glsandbox_kernel", store_history=False)


@pytest.fixture()
def ip(shell: InteractiveShell) -> Iterator[InteractiveShell]:
    """The shell, with every sandbox session closed after the test (the leak check runs next)."""
    yield shell
    shell.run_line_magic("sandbox", "stop")


def run(ip: InteractiveShell, code: str) -> Any:
    return ip.run_cell(code, store_history=False)


def plain(text: str) -> str:
    return ANSI.sub("", text)


# -- persistence, transfer, display ------------------------------------------------------------------


def test_state_persists_across_cells(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(ip, "%%sandbox\nx = 41").success
    result = run(ip, "%%sandbox\nprint('x is', x + 1)\nx + 1")
    assert result.success
    assert repr(result.result) == "42"
    assert "x is 42" in capsys.readouterr().out
    assert "x" not in ip.user_ns or ip.user_ns["x"] != 41  # nothing leaked into the host namespace


def test_named_sessions_are_separate(ip: InteractiveShell) -> None:
    assert run(ip, "%%sandbox --name a\nonly_in_a = 1").success
    result = run(ip, "%%sandbox --name b\nonly_in_a")
    assert isinstance(result.error_in_exec, NameError)
    assert run(ip, "%%sandbox --name a\nonly_in_a").success


def test_in_and_out_copy_values(ip: InteractiveShell) -> None:
    import numpy as np
    import pandas as pd

    ip.user_ns["litres"] = pd.DataFrame({"fuel": ["diesel", "petrol"], "litres": [100.0, 50.0]})
    ip.user_ns["factors"] = {"diesel": 2.68, "petrol": 2.31}
    ip.user_ns["weights"] = np.array([1.0, 2.0])
    code = (
        "%%sandbox --in litres,factors,weights --out kg,total,scaled\n"
        "kg = litres.assign(kg=litres.fuel.map(factors) * litres.litres)\n"
        "total = float(kg.kg.sum())\n"
        "scaled = weights * 2"
    )
    result = run(ip, code)
    assert result.success, result.error_in_exec
    assert isinstance(ip.user_ns["kg"], pd.DataFrame)
    assert ip.user_ns["total"] == pytest.approx(100 * 2.68 + 50 * 2.31)
    assert list(ip.user_ns["scaled"]) == [2.0, 4.0]


def test_out_refuses_types_that_may_not_leave(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns.pop("fn", None)
    result = run(ip, "%%sandbox --out fn\nfn = lambda: 1")
    assert type(result.error_in_exec).__name__ == "SandboxSecurityError"
    assert isinstance(result.error_in_exec, exceptions.SandboxSecurityError)  # the host's own refusal
    assert "--out fn" in str(result.error_in_exec)
    assert "fn" not in ip.user_ns
    assert "SandboxSecurityError" in capsys.readouterr().out


def test_out_names_a_missing_variable(ip: InteractiveShell) -> None:
    result = run(ip, "%%sandbox --out nowhere\npass")
    assert isinstance(result.error_in_exec, NameError)
    assert "nowhere" in str(result.error_in_exec)


def test_error_fails_the_cell_like_a_local_error(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(ip, "%%sandbox\ndef f():\n    return {}['missing']\nf()")
    err = result.error_in_exec
    assert isinstance(err, KeyError) and isinstance(err, SandboxCellError)
    assert str(err) == "'missing'"
    out = plain(capsys.readouterr().out)
    assert "return {}['missing']" in out and "KeyError" in out
    assert "run_cell_magic" not in out  # the sandbox's traceback, not the magic's


def test_rich_display_goes_through_ipython(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(ip, "%%sandbox\nfrom IPython.display import display, HTML\ndisplay(HTML('<b>hi</b>'))\nprint('done')")
    assert result.success
    out = capsys.readouterr().out
    assert "IPython.core.display.HTML object" in out and "done" in out


def test_input_in_a_sandboxed_cell(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("builtins.input", lambda prompt="": "typed")
    assert run(ip, "%%sandbox\nprint('got', input('? '))").success
    assert "got typed" in capsys.readouterr().out


# -- settings, levels, backends ----------------------------------------------------------------------


def test_changed_settings_start_a_new_session(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(ip, "%%sandbox\nold = 1").success
    result = run(ip, "%%sandbox --timeout 20\nold")
    assert isinstance(result.error_in_exec, NameError)
    said = capsys.readouterr()
    err = said.out + said.err  # the magic's notices are displays (its record lists them): stdout here
    assert "changed (timeout preset -> 20.0)" in err and "state is lost" in err
    assert run(ip, "%%sandbox --timeout 20\nagain = 1").success
    result = run(ip, "%%sandbox --timeout 20 --new\nagain")
    assert isinstance(result.error_in_exec, NameError)


@pytest.mark.parametrize(("level", "memory_mib"), [("strict", 256), ("moderate", 512), ("lenient", 1024)])
def test_each_level(ip: InteractiveShell, capsys: pytest.CaptureFixture[str], level: str, memory_mib: int) -> None:
    # The memory limit is resident memory, enforced outside (cgroup or monitor), not RLIMIT_AS.
    assert run(ip, f"%%sandbox {level} --name lvl\nprint('ok')").success
    assert "ok" in capsys.readouterr().out.strip().splitlines()
    ip.run_line_magic("sandbox", "config lvl")
    out = capsys.readouterr().out
    assert f'"security_level": "{level}"' in out
    assert re.search(rf'"memory_limit_bytes": {memory_mib * 2**20}\b', out), out


def _backend_params() -> list[Any]:
    params = []
    for name, cls in sorted(backends().items()):
        if name == "vm":  # a VM boot per session: covered by tests/backends/test_vm.py
            continue
        if name == "chroot":  # needs FilesystemConfig.root, which the magic does not take (test_escape covers it)
            continue
        ok, reason = cls.available()
        params.append(pytest.param(name, marks=() if ok else pytest.mark.skip(reason=f"{name}: {reason}")))
    return params


@pytest.mark.parametrize("backend", _backend_params())
def test_each_available_backend(ip: InteractiveShell, capsys: pytest.CaptureFixture[str], backend: str) -> None:
    result = run(ip, f"%%sandbox --isolation {backend} --name be\nvalue = 6 * 7")
    assert result.success, result.error_in_exec
    assert run(ip, f"%%sandbox --isolation {backend} --name be\nprint(value)").success
    assert capsys.readouterr().out.strip().endswith("42")
    ip.run_line_magic("sandbox", "status")
    assert backend in capsys.readouterr().out


def test_unavailable_backend_is_a_usage_error(ip: InteractiveShell) -> None:
    missing = [n for n, cls in backends().items() if not cls.available()[0]]
    if not missing:
        pytest.skip("every registered backend is available here")
    with pytest.raises(UsageError, match="unavailable"):
        ip.run_cell_magic("sandbox", f"--isolation {missing[0]}", "1")


@pytest.mark.parametrize(
    "line",
    [
        "--bogus",
        "extreme",
        "--memory lots",
        "--network nothost",
        "--timeout -3",
        "--in 1x",
        "--isolation moon",
    ],
)
def test_bad_arguments_raise_usage_error_with_help(ip: InteractiveShell, line: str) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("sandbox", line, "print('never')")
    assert info.value.args[0]


def test_bad_arguments_show_help_text(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="--in <A,B>"):
        ip.run_cell_magic("sandbox", "--bogus", "1")
    with pytest.raises(UsageError, match="%sandbox status"):
        ip.run_line_magic("sandbox", "bogus")
    with pytest.raises(UsageError, match="no sandbox session named"):
        ip.run_line_magic("sandbox", "stop nosuch")


def test_missing_in_variable_is_a_usage_error(ip: InteractiveShell) -> None:
    ip.user_ns.pop("undefined_here", None)
    with pytest.raises(UsageError, match="undefined_here"):
        ip.run_cell_magic("sandbox", "--in undefined_here", "1")


# -- line magic, limits, lifecycle ------------------------------------------------------------------------


def test_status_restart_audit_stop(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(ip, "%%sandbox --name s1\nkeep = 1").success
    ip.run_line_magic("sandbox", "status")
    out = capsys.readouterr().out
    assert "s1" in out and "running" in out
    ip.run_line_magic("sandbox", "audit s1")
    out = capsys.readouterr().out
    assert "hash chain verified" in out and "execution_success" in out
    ip.run_line_magic("sandbox", "restart s1")
    assert isinstance(run(ip, "%%sandbox --name s1\nkeep").error_in_exec, NameError)
    pids = ip.magics_manager.registry["SandboxMagics"].registry.sessions["s1"].sandbox.worker_pids
    ip.run_line_magic("sandbox", "stop s1")
    assert not wait_gone(pids)
    ip.run_line_magic("sandbox", "status")
    assert "No sandbox sessions" in capsys.readouterr().out


def test_timeout_fails_the_cell_and_the_next_runs_fresh(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10 s, not 1: the session's timeout also bounds its quick cells, and a fresh sandbox on a loaded host
    # can take a second; the 600 s cell ends only by the timeout (a timeout that did not fire fails it)
    assert run(ip, "%%sandbox --timeout 10 --name t\nbefore = 1").success
    result = run(ip, "%%sandbox --timeout 10 --name t\nimport time\ntime.sleep(600)")
    assert type(result.error_in_exec).__name__ == "SandboxTimeoutError"
    assert isinstance(result.error_in_exec, TimeoutError)
    assert isinstance(result.error_in_exec, exceptions.SandboxTimeoutError)  # the host measured it
    result = run(ip, "%%sandbox --timeout 10 --name t\nbefore")
    assert isinstance(result.error_in_exec, NameError)
    said = capsys.readouterr()
    assert "fresh sandbox" in said.out + said.err  # a notice the record lists (a display: stdout here)


def test_unload_closes_sessions() -> None:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "glsandbox_kernel")
    try:
        assert ip.run_cell("%%sandbox --name unload\nimport os").success
        magics = ip.magics_manager.registry["SandboxMagics"]
        pids = magics.registry.sessions["unload"].sandbox.worker_pids
        assert pids
    finally:
        ip.run_line_magic("unload_ext", "glsandbox_kernel")
    assert not wait_gone(pids)
    assert "sandbox" not in ip.magics_manager.magics["cell"]
    ip.run_line_magic("load_ext", "glsandbox_kernel")  # the module fixture unloads it at the end


# -- a real ipykernel -----------------------------------------------------------------------------------------


def test_magic_in_a_real_ipykernel() -> None:
    k = Kernel("python3")
    try:
        reply, _ = k.execute("%load_ext glsandbox_kernel\nhost_a = 2")
        assert reply["status"] == "ok"
        reply, outputs = k.execute(
            "%%sandbox strict --in host_a --out b\nimport os\nb = host_a * 21\nprint('flag', os.environ['GLSANDBOX'])\n"
            "from IPython.display import display, HTML\ndisplay(HTML('<i>x</i>'))\nb"
        )
        assert reply["status"] == "ok", reply
        assert stdout_of(outputs) == "flag 1\n"
        assert descendants(k.pid)
        assert any(m["msg_type"] == "display_data" and "text/html" in m["content"]["data"] for m in outputs)
        result = next(m for m in outputs if m["msg_type"] == "execute_result")
        assert result["content"]["data"]["text/plain"] == "42"
        reply, outputs = k.execute("print(b + 1)")
        assert stdout_of(outputs) == "43\n"

        reply, outputs = k.execute("%%sandbox strict\ndef g():\n    raise ValueError('bad value')\ng()")
        assert reply["status"] == "error"
        assert (reply["ename"], reply["evalue"]) == ("ValueError", "bad value")
        errors = [m for m in outputs if m["msg_type"] == "error"]
        assert len(errors) == 1 and "raise ValueError" in plain("".join(errors[0]["content"]["traceback"]))

        # An interrupt (SIGINT to this kernel) reaches the sandboxed cell; the session survives.
        msg_id = k.kc.execute(
            "%%sandbox strict\nimport time\nprint('looping', flush=True)\nfor _ in range(3000): time.sleep(0.1)"
        )
        k.wait_for_stdout(msg_id, "looping")  # the loop runs in the sandbox: interrupt it there
        k.km.interrupt_kernel()
        k.collect(msg_id, timeout=120)
        assert k.shell_reply(msg_id)["content"]["ename"] == "KeyboardInterrupt"
        reply, outputs = k.execute("%%sandbox strict\nprint(b)")
        assert stdout_of(outputs) == "42\n", stderr_of(outputs)
        tree = descendants(k.pid)
        assert tree
    finally:
        k.shutdown()
    assert not wait_gone(tree, timeout=15)


@pytest.mark.parametrize("name", ["__builtins__", "print"])
def test_out_refuses_python_own_names(ip: InteractiveShell, name: str) -> None:
    result = run(ip, f"%%sandbox --out {name}\n{name} = 1")
    assert isinstance(result.error_in_exec, UsageError) and "Python itself defines" in str(result.error_in_exec)
    assert not isinstance(ip.user_ns["__builtins__"], int)
