"""The glsandbox Jupyter kernel over real kernels (jupyter_client, no mocks).

jupyter_kernel_test's protocol suite, then what it does not cover:
interrupts, stdin, comms and widgets, per-cell limits, error replies after
sandbox failures, restart and leftover processes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import jupyter_kernel_test as jkt
import pytest

from glsandbox_kernel.kernel.install import DEFAULT_SPECS, kernel_spec
from glsandbox_kernel.kernel.limits import CellOptionsError, split_cell_options
from glsandbox_kernel.kernel.relay import content_for, json_safe, safe_payload

from ..conftest import wait_gone
from ..jupyter_fixtures import (
    Kernel,
    descendants,
    glsandbox_kernelspec,
    kernel_made,
    notices_of,
    stderr_of,
    stdout_of,
)

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest


@pytest.mark.usefixtures("glsandbox_kernelspec")
class TestGlsandboxKernelProtocol(jkt.KernelTests):
    """jupyter_kernel_test with every sample attribute filled."""

    kernel_name = "glsandbox"

    def execute_helper(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """jupyter_kernel_test's helper, minus the outputs the kernel adds itself.

        Every cell ends with its audit output (and may carry monitor outputs):
        legal protocol, but jupyter_kernel_test counts outputs exactly (one
        error output, every display_data of a sample's MIME type). What the
        sandbox produced is checked as is.
        """
        reply, outputs = super().execute_helper(*args, **kwargs)
        return reply, [m for m in outputs if not kernel_made(m)]

    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    code_page_something = "print?"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
        {"code": "from IPython.display import HTML; HTML('<b>x</b>')", "mime": "text/html", "result": "<b>x</b>"},
    ]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))", "mime": "text/html"},
        {"code": "from IPython.display import Math, display; display(Math('\\\\frac{1}{2}'))", "mime": "text/latex"},
    ]
    code_history_pattern = "1?2*"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"


@pytest.fixture(scope="module")
def kernel(glsandbox_kernelspec: str) -> Iterator[Kernel]:
    k = Kernel("glsandbox")
    try:
        yield k
    finally:
        k.shutdown()


def _error(reply: dict[str, Any]) -> tuple[str, str]:
    assert reply["status"] == "error", reply
    return reply["ename"], reply["evalue"]


# -- relay ---------------------------------------------------------------------------------------


def test_kernel_info(kernel: Kernel) -> None:
    msg_id = kernel.kc.kernel_info()
    info = kernel.shell_reply(msg_id)["content"]
    assert info["implementation"] == "glsandbox"
    assert info["language_info"]["name"] == "python"
    assert "debugger" not in info.get("supported_features", [])


def test_cells_run_in_the_sandbox_not_the_kernel(kernel: Kernel) -> None:
    reply, outputs = kernel.execute("import os; print(os.environ.get('GLSANDBOX'))")
    assert reply["status"] == "ok"
    assert stdout_of(outputs) == "1\n"  # set only in the sandbox's scrubbed environment
    with open(f"/proc/{kernel.pid}/environ", "rb") as fh:
        assert b"GLSANDBOX=" not in fh.read()
    assert descendants(kernel.pid)  # the worker tree lives below the kernel process
    # The worker's environment is scrubbed: no Jupyter connection details reach it.
    reply, outputs = kernel.execute("import os; print(sorted(k for k in os.environ if 'JPY' in k or 'JUPYTER' in k))")
    assert stdout_of(outputs).strip() == "[]"


def test_rich_outputs_relayed_faithfully(kernel: Kernel) -> None:
    code = (
        "from IPython.display import display, update_display, clear_output\n"
        "display({'text/plain': 'p', 'application/json': {'a': 1}}, raw=True,"
        " metadata={'application/json': {'expanded': True}})\n"
        "h = display('first', display_id='d1')\n"
        "update_display('second', display_id='d1')\n"
        "print('out'); import sys; print('err', file=sys.stderr)\n"
        "clear_output(wait=True)\n"
        "42"
    )
    reply, outputs = kernel.execute(code)
    assert reply["status"] == "ok"
    kinds = [m["msg_type"] for m in outputs]
    for kind in ("execute_input", "display_data", "update_display_data", "stream", "clear_output", "execute_result"):
        assert kind in kinds, kinds
    first = next(m for m in outputs if m["msg_type"] == "display_data")
    assert first["content"]["data"]["application/json"] == {"a": 1}
    assert first["content"]["metadata"] == {"application/json": {"expanded": True}}
    update = next(m for m in outputs if m["msg_type"] == "update_display_data")
    shown = [
        m for m in outputs if m["msg_type"] == "display_data" and m["content"]["data"].get("text/plain") == "'first'"
    ]
    # the id is scoped to the cell that showed it (relay.DisplayScopes): the update names the same one
    assert update["content"]["transient"]["display_id"] == shown[0]["content"]["transient"]["display_id"]
    assert update["content"]["transient"]["display_id"].startswith("d1~")
    assert next(m for m in outputs if m["msg_type"] == "clear_output")["content"]["wait"] is True
    result = next(m for m in outputs if m["msg_type"] == "execute_result")
    assert result["content"]["data"]["text/plain"] == "42"
    assert result["content"]["execution_count"] == reply["execution_count"]


def test_matplotlib_inline_figure(kernel: Kernel) -> None:
    reply, outputs = kernel.execute("import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [1, 2]);")
    assert reply["status"] == "ok"
    images = [
        m
        for m in outputs
        if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"] and not kernel_made(m)
    ]
    assert len(images) == 1


def test_error_has_sandbox_traceback(kernel: Kernel) -> None:
    reply, outputs = kernel.execute("def f():\n    return 1/0\nf()")
    assert _error(reply)[0] == "ZeroDivisionError"
    errors = [m for m in outputs if m["msg_type"] == "error"]
    assert len(errors) == 1
    plain = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors[0]["content"]["traceback"]))
    assert "return 1/0" in plain


def test_state_persists_and_user_expressions(kernel: Kernel) -> None:
    kernel.execute("persist = [1, 2, 3]")
    reply, _ = kernel.execute("persist.append(4)", user_expressions={"n": "len(persist)"})
    assert reply["user_expressions"]["n"]["data"]["text/plain"] == "4"


def test_hostile_display_data_is_cleaned(kernel: Kernel) -> None:
    reply, outputs = kernel.execute(
        "from IPython.display import display\n"
        "display({'text/plain': 'x', 'application/json': {'v': float('nan')}}, raw=True)"
    )
    assert reply["status"] == "ok"
    shown = next(m for m in outputs if m["msg_type"] == "display_data")
    assert shown["content"]["data"]["application/json"] == {"v": None}


_HOSTILE_HTML = "<img src=x onerror=alert(document.cookie)><script>alert(1)</script>"
_HOSTILE_LATEX = r"$\href{javascript:alert(document.cookie)}{click}$"


def _no_active(bundle: dict[str, Any]) -> None:
    text = repr(bundle).lower()
    for active in ("onerror", "<script", "javascript:", "application/javascript"):
        assert active not in text, bundle


def test_hostile_user_expressions_and_page_payloads_are_cleaned(kernel: Kernel) -> None:
    """Code in the sandbox replaces its shell's user_expressions and writes its own pager payload:
    the execute_reply the frontend receives carries neither scripts nor a scripting formula."""
    reply, _ = kernel.execute(
        "_ip = get_ipython()\n"
        f"_bundle = {{'text/plain': 'x', 'text/html': {_HOSTILE_HTML!r}, 'text/latex': {_HOSTILE_LATEX!r},"
        " 'application/javascript': 'alert(1)'}\n"
        "_ip.user_expressions = lambda expressions: {k: {'status': 'ok', 'data': _bundle, 'metadata': {}}"
        " for k in expressions}\n"
        "_ip.payload_manager.write_payload({'source': 'page', 'data': _bundle, 'start': 0})",
        user_expressions={"e": "1"},
    )
    assert reply["status"] == "ok", reply
    shown = reply["user_expressions"]["e"]
    assert shown["status"] == "ok" and shown["data"]["text/plain"] == "x"
    assert "text/latex" not in shown["data"] and "application/javascript" not in shown["data"]
    _no_active(shown["data"])
    pages = [p for p in reply["payload"] if p.get("source") == "page"]
    assert pages and pages[0]["data"]["text/plain"] == "x"
    _no_active(pages[0]["data"])
    kernel.execute("del _ip.user_expressions")  # the shell's own method again


def test_sandboxed_cell_cannot_replace_the_analysts_code(kernel: Kernel) -> None:
    """A ``set_next_input`` payload with ``replace`` would rewrite the running cell's code in the
    frontend: it arrives as a new cell offered below (``replace`` false), its text unchanged."""
    reply, _ = kernel.execute(
        "get_ipython().payload_manager.write_payload("
        "{'source': 'set_next_input', 'text': 'print(\"swapped\")', 'replace': True, 'x': 1})"
    )
    assert reply["status"] == "ok", reply
    asked = [p for p in reply["payload"] if p.get("source") == "set_next_input"]
    assert asked == [{"source": "set_next_input", "text": 'print("swapped")', "replace": False}], reply["payload"]


def test_hostile_inspect_and_complete_replies_are_cleaned(kernel: Kernel) -> None:
    """The sandbox's inspector and completer answer with markup: inspect data is sanitized,
    completion matches are plain text."""
    reply, _ = kernel.execute(
        "_ip = get_ipython()\n"
        f"_ip.object_inspect_mime = lambda *a, **k: {{'text/plain': 'doc', 'text/html': {_HOSTILE_HTML!r},"
        f" 'text/latex': {_HOSTILE_LATEX!r}}}"
    )
    assert reply["status"] == "ok", reply
    inspected = kernel.shell_reply(kernel.kc.inspect("zip", 3))["content"]
    assert inspected["found"] is True and inspected["data"]["text/plain"] == "doc"
    assert "text/latex" not in inspected["data"]
    _no_active(inspected["data"])
    assert isinstance(inspected["metadata"], dict)
    kernel.execute("del _ip.object_inspect_mime")
    completed = kernel.shell_reply(kernel.kc.complete("zi", 2))["content"]
    assert "zip" in completed["matches"] and all(isinstance(m, str) for m in completed["matches"])


# -- stdin -----------------------------------------------------------------------------------------


def test_input_and_getpass_reach_the_frontend(kernel: Kernel) -> None:
    msg_id = kernel.kc.execute(
        "a = input('name? ')\nimport getpass\nb = getpass.getpass('pw: ')\nprint(a, len(b))", allow_stdin=True
    )
    request = kernel.kc.get_stdin_msg(timeout=30)
    assert request["content"] == {"prompt": "name? ", "password": False}
    kernel.kc.input("bob")
    request = kernel.kc.get_stdin_msg(timeout=30)
    assert request["content"]["password"] is True
    kernel.kc.input("secret")
    outputs = kernel.collect(msg_id)
    assert kernel.shell_reply(msg_id)["content"]["status"] == "ok"
    assert stdout_of(outputs) == "bob 6\n"


def test_input_without_stdin_support_is_an_error(kernel: Kernel) -> None:
    reply, _ = kernel.execute("input('x')", allow_stdin=False)
    assert reply["status"] == "error"


def test_interrupt_while_waiting_for_input(kernel: Kernel) -> None:
    kernel.execute("keep_me = 5")
    msg_id = kernel.kc.execute("input('never answered')", allow_stdin=True)
    kernel.kc.get_stdin_msg(timeout=30)
    kernel.km.interrupt_kernel()
    kernel.collect(msg_id)
    assert kernel.shell_reply(msg_id)["content"]["ename"] == "KeyboardInterrupt"
    reply, outputs = kernel.execute("print(keep_me)")
    assert stdout_of(outputs) == "5\n", (reply, stderr_of(outputs), notices_of(outputs))


# -- interrupt -------------------------------------------------------------------------------------


def test_interrupt_reaches_the_worker_and_state_survives(kernel: Kernel) -> None:
    kernel.execute("survivor = 'yes'")
    # 300 s of short sleeps: only an interrupt ends it within the waits below
    msg_id = kernel.kc.execute("import time\nprint('looping', flush=True)\nfor _ in range(3000): time.sleep(0.1)")
    kernel.wait_for_stdout(msg_id, "looping")  # the loop runs in the worker: interrupt it there
    kernel.km.interrupt_kernel()
    kernel.collect(msg_id, timeout=120)
    reply = kernel.shell_reply(msg_id)["content"]
    assert _error(reply)[0] == "KeyboardInterrupt"
    reply, outputs = kernel.execute("print(survivor)")
    assert stdout_of(outputs) == "yes\n"
    assert "state" not in (stderr_of(outputs) + notices_of(outputs))


def test_interrupt_while_the_cell_is_prepared_is_not_lost(kernel: Kernel) -> None:
    """An interrupt that arrives once the kernel took the cell but before the cell's request
    reached a worker (a fresh one starting after the last one died) is bound to that cell:
    before, it found no operation running, was dropped, and the cell ran its 300 s."""
    kernel.execute("import os\nos._exit(3)")  # the next cell starts a fresh worker
    msg_id = kernel.kc.execute("import time\nfor _ in range(3000): time.sleep(0.1)")
    while True:  # execute_input: the kernel is in do_execute, the worker not yet asked
        msg = kernel.kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            break
    kernel.km.interrupt_kernel()
    kernel.collect(msg_id, timeout=120)
    assert _error(kernel.shell_reply(msg_id)["content"])[0] == "KeyboardInterrupt"
    reply, outputs = kernel.execute("print('next cell runs')")
    assert stdout_of(outputs) == "next cell runs\n", (reply, notices_of(outputs))


def test_interrupt_of_a_stuck_cell_kills_and_says_state_lost(kernel: Kernel) -> None:
    kernel.execute("doomed = 1")
    msg_id = kernel.kc.execute(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('ignoring', flush=True)\n"
        "time.sleep(600)"
    )
    kernel.wait_for_stdout(msg_id, "ignoring")  # interrupted before SIG_IGN, the cell would just stop
    kernel.km.interrupt_kernel()
    outputs = kernel.collect(msg_id, timeout=120)
    reply = kernel.shell_reply(msg_id)["content"]
    ename, evalue = _error(reply)
    assert ename == "KeyboardInterrupt" and "state is lost" in evalue
    assert "state is lost" in (stderr_of(outputs) + notices_of(outputs))
    reply, outputs = kernel.execute("print('alive'); print(doomed)")
    assert stdout_of(outputs) == "alive\n"
    assert "lost" in (stderr_of(outputs) + notices_of(outputs))
    assert _error(reply)[0] == "NameError"


# -- sandbox failures become error replies -----------------------------------------------------------


def test_per_cell_timeout(kernel: Kernel) -> None:
    kernel.execute("before_timeout = 1")
    # a 600 s cell: only the 1 s timeout ends it within the wait (which only bounds, never times)
    reply, outputs = kernel.execute("%%sandbox --timeout 1\nimport time\ntime.sleep(600)", timeout=120)
    ename, evalue = _error(reply)
    assert ename == "SandboxTimeoutError" and "1 s" in evalue
    assert any(m["msg_type"] == "error" for m in outputs)
    reply, outputs = kernel.execute("x_after = 2; print(x_after)")
    assert reply["status"] == "ok" and stdout_of(outputs) == "2\n"
    assert "fresh sandbox" in (stderr_of(outputs) + notices_of(outputs))
    # The timeout applied to that cell only.
    reply, _ = kernel.execute("import time; time.sleep(1.5)")
    assert reply["status"] == "ok"


def test_per_cell_memory_inside_keeps_state(kernel: Kernel) -> None:
    """The cell's --memory refuses the allocation inside (a soft RLIMIT_AS), the state is kept. The host
    cannot see that refusal, so the MemoryError stays the code's own, with a note naming the limit."""
    kernel.execute("kept = 'state'")
    reply, outputs = kernel.execute("%%sandbox --memory 100M\nblob = b'x' * (300 * 1024 * 1024)")
    ename, _ = _error(reply)
    *traceback, note = reply["traceback"]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", "".join(traceback))
    assert ename == "MemoryError" and "blob = b'x'" in plain  # the code's own traceback, kept
    assert "the cell's memory limit of 100.0 MiB" in note and "RLIMIT_AS" in note
    reply, outputs = kernel.execute("print(kept); blob2 = b'x' * (120 * 1024 * 1024); del blob2")
    assert reply["status"] == "ok", reply  # the limit is back to the session's
    assert stdout_of(outputs) == "state\n"


def test_per_cell_memory_enforced_outside(kernel: Kernel) -> None:
    """Code that lifts its own soft rlimit is still stopped by the host-side guard."""
    code = (
        "%%sandbox --memory 100M\n"
        "import resource, time\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (hard, hard))\n"
        "blob = b'x' * (220 * 1024 * 1024)\n"
        "time.sleep(10)"
    )
    reply, outputs = kernel.execute(code)
    ename, evalue = _error(reply)
    assert ename == "SandboxMemoryError" and "measured outside" in evalue
    reply, outputs = kernel.execute("print('next')")
    assert stdout_of(outputs) == "next\n"


def test_per_cell_cpu_time(kernel: Kernel) -> None:
    reply, _ = kernel.execute("%%sandbox --cpu-time 1\nwhile True: pass", timeout=60)
    ename, evalue = _error(reply)
    assert ename == "SandboxCPUTimeError" and "1 s" in evalue
    assert kernel.execute("1")[0]["status"] == "ok"


def test_bad_cell_options_are_a_usage_error(kernel: Kernel) -> None:
    reply, outputs = kernel.execute("%%sandbox --memory lots\nprint('not run')")
    ename, _ = _error(reply)
    assert ename == "UsageError"
    assert "--timeout S" in "".join(reply["traceback"])
    assert stdout_of(outputs) == ""


def test_session_memory_limit_error_reply(kernel: Kernel) -> None:
    reply, _ = kernel.execute("big = b'x' * (3 * 1024 ** 3)")
    assert _error(reply)[0] == "SandboxMemoryError"
    assert kernel.execute("1")[0]["status"] == "ok"


def test_worker_crash_error_reply(kernel: Kernel) -> None:
    reply, outputs = kernel.execute("import os; os._exit(3)")
    ename, evalue = _error(reply)
    assert ename == "SandboxCrashedError" and "exit code 3" in evalue
    reply, outputs = kernel.execute("print('recovered')")
    assert stdout_of(outputs) == "recovered\n"
    assert "lost" in (stderr_of(outputs) + notices_of(outputs))


def test_violation_error_reply(glsandbox_kernelspec: str) -> None:
    k = Kernel("glsandbox-strict")
    try:
        # The STRICT preset (256 MiB of resident memory, enforced outside) reached the sandbox.
        reply, _ = k.execute("x = b'1' * (300 * 2**20)", timeout=60)
        assert reply["status"] == "error" and reply["ename"] == "SandboxMemoryError", reply
        reply, _ = k.execute("import subprocess\nsubprocess.run(['/bin/true'])")
        assert reply["status"] == "error"  # STRICT denies new programs
        if reply["ename"] not in ("SandboxViolationError", "SandboxEscapeError"):
            pytest.skip(f"this host's confinement denied execve ({reply['ename']}) without recording a violation")
        assert k.execute("print('ok')")[0]["status"] == "ok"
    finally:
        k.shutdown()


# -- comms and widgets -------------------------------------------------------------------------------


def _send_comm(kernel: Kernel, msg_type: str, content: dict[str, Any], buffers: list[bytes] | None = None) -> str:
    msg = kernel.kc.session.msg(msg_type, content)
    kernel.kc.shell_channel.send(msg) if not buffers else kernel.kc.session.send(
        kernel.kc.shell_channel.socket, msg, buffers=buffers
    )
    return str(msg["header"]["msg_id"])


def test_ipywidgets_slider_both_ways(kernel: Kernel) -> None:
    code = (
        "import ipywidgets as w\n"
        "slider = w.IntSlider(value=1)\n"
        "slider.observe(lambda change: print('value changed to', change['new']), names='value')\n"
        "slider"
    )
    reply, outputs = kernel.execute(code)
    assert reply["status"] == "ok"
    opens = [m for m in outputs if m["msg_type"] == "comm_open"]
    assert opens and all(m["content"]["target_name"] == "jupyter.widget" for m in opens)
    view = next(m for m in outputs if m["msg_type"] == "execute_result")
    model_id = view["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert model_id in {m["content"]["comm_id"] for m in opens}

    msg_id = _send_comm(
        kernel,
        "comm_msg",
        {"comm_id": model_id, "data": {"method": "update", "state": {"value": 7}, "buffer_paths": []}},
    )
    outputs = kernel.collect(msg_id)
    assert stdout_of(outputs) == "value changed to 7\n"
    echoes = [m for m in outputs if m["msg_type"] == "comm_msg"]
    assert echoes and echoes[0]["content"]["data"]["method"] == "echo_update"
    reply, outputs = kernel.execute("print(slider.value)")
    assert stdout_of(outputs) == "7\n"


def test_frontend_opened_comm_with_buffers(kernel: Kernel) -> None:
    kernel.execute(
        "import comm\n"
        "def _target(c, open_msg):\n"
        "    c.on_msg(lambda m: c.send({'got': m['content']['data'], 'n': len(m['buffers'])},"
        " buffers=[bytes(b)[::-1] for b in m['buffers']]))\n"
        "comm.get_comm_manager().register_target('echo', _target)"
    )
    msg_id = _send_comm(kernel, "comm_open", {"comm_id": "c-1", "target_name": "echo", "data": {}})
    kernel.collect(msg_id)
    info_id = kernel.kc.comm_info(target_name="echo")
    assert "c-1" in kernel.shell_reply(info_id)["content"]["comms"]
    msg_id = _send_comm(kernel, "comm_msg", {"comm_id": "c-1", "data": {"hello": 1}}, buffers=[b"abc"])
    outputs = kernel.collect(msg_id)
    echo = next(m for m in outputs if m["msg_type"] == "comm_msg")
    assert echo["content"]["data"] == {"got": {"hello": 1}, "n": 1}
    assert [bytes(b) for b in echo["buffers"]] == [b"cba"]
    msg_id = _send_comm(kernel, "comm_close", {"comm_id": "c-1", "data": {}})
    kernel.collect(msg_id)
    info_id = kernel.kc.comm_info(target_name="echo")
    assert "c-1" not in kernel.shell_reply(info_id)["content"]["comms"]


# -- lifecycle ---------------------------------------------------------------------------------------


def test_restart_gives_a_fresh_worker(glsandbox_kernelspec: str) -> None:
    k = Kernel("glsandbox")
    try:
        assert k.execute("marker = 1")[0]["status"] == "ok"
        old_tree = descendants(k.pid)
        k.km.restart_kernel(now=False)
        k.kc.wait_for_ready(timeout=60)
        k.flush_iopub()
        _, outputs = k.execute("print('marker' in globals())")
        assert stdout_of(outputs) == "False\n"
        assert not set(old_tree) & set(descendants(k.pid))
        assert not wait_gone(old_tree, timeout=10)
    finally:
        k.shutdown()


def test_shutdown_leaves_no_process(glsandbox_kernelspec: str) -> None:
    k = Kernel("glsandbox")
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\nprint(os.getpid())"
    reply, _ = k.execute(code)
    assert reply["status"] == "ok"
    tree = [k.pid, *descendants(k.pid)]
    assert len(tree) >= 4  # kernel, zygote, the worker tree, the worker's child
    k.shutdown()
    left = wait_gone(tree, timeout=15)
    assert not left, f"left behind after shutdown: {left}"


def test_quick_requests_do_not_wait_for_a_running_cell(kernel: Kernel) -> None:
    # the cell sleeps 600 s: a reply that waited for it would not come within the wait below (a bound only)
    msg_id = kernel.kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(600)")
    kernel.wait_for_stdout(msg_id, "sleeping")
    ctl = kernel.kc.session.msg("is_complete_request", {"code": "x = ("})
    kernel.kc.control_channel.send(ctl)
    while True:
        reply = kernel.kc.get_control_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == ctl["header"]["msg_id"]:
            break
    assert reply["content"]["status"] in ("unknown", "incomplete")
    kernel.km.interrupt_kernel()  # end the cell
    kernel.collect(msg_id, timeout=120)
    assert _error(kernel.shell_reply(msg_id)["content"])[0] == "KeyboardInterrupt"


def test_config_file_sets_kernel_options(glsandbox_kernelspec: str, tmp_path: Any) -> None:
    (tmp_path / "glsandbox_kernel_config.json").write_text('{"SandboxKernel": {"memory": "300M"}}')
    k = Kernel("glsandbox", env={**os.environ, "JUPYTER_CONFIG_PATH": str(tmp_path)})
    try:
        # 300 MiB of resident memory (enforced outside): 250 MiB fit, 350 MiB do not.
        reply, _ = k.execute("x = b'1' * (250 * 2**20)\ndel x", timeout=60)
        assert reply["status"] == "ok", reply
        reply, _ = k.execute("x = b'1' * (350 * 2**20)", timeout=60)
        assert reply["status"] == "error" and reply["ename"] == "SandboxMemoryError", reply
    finally:
        k.shutdown()


def test_glsandbox_install_command(tmp_path: Any) -> None:
    import json

    from glsandbox_kernel.cli import main

    assert main(["install", "--prefix", str(tmp_path), "--name", "gl-test", "--level", "lenient"]) == 0
    spec = json.loads((tmp_path / "share/jupyter/kernels/gl-test/kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    assert "--SandboxKernel.level=lenient" in spec["argv"]
    assert spec["display_name"] == "Python 3 (sandboxed, lenient)"
    assert main(["install", "--prefix", str(tmp_path)]) == 0
    kernels = sorted(p.name for p in (tmp_path / "share/jupyter/kernels").iterdir())
    assert kernels == ["gl-test", "glsandbox", "glsandbox-strict"]


# -- units on the host side ------------------------------------------------------------------------------


def test_split_cell_options() -> None:
    options, body = split_cell_options("%%sandbox --timeout 5 --memory 200M\nx = 1\n")
    assert options is not None and options.timeout == 5 and options.memory == 200 * 2**20
    assert body == "# %%sandbox --timeout 5 --memory 200M\nx = 1\n"
    assert split_cell_options("x = 1") == (None, "x = 1")
    assert split_cell_options("%%sandboxed\n1")[0] is None
    for bad in ("%%sandbox strict\n1", "%%sandbox --timeout -1\n1", "%%sandbox --memory 1k\n1", "%%sandbox --help"):
        with pytest.raises(CellOptionsError):
            split_cell_options(bad)


def test_relay_cleans_hostile_frames() -> None:
    assert json_safe({1: float("inf"), "b": b"\x00", "l": (1, [2])}) == {"1": None, "b": "AA==", "l": [1, [2]]}
    assert content_for({"type": "stream", "name": "evil", "text": 3}, 1) == ("stream", {"name": "stdout", "text": ""})
    assert content_for({"type": "update_display_data", "data": {}}, 1) is None
    assert content_for({"type": "execute_request"}, 1) is None
    payload = [{"source": "ask_exit", "keepkernel": False}, {"source": "page", "data": {"text/plain": "x"}}, "junk"]
    assert safe_payload(payload) == [{"source": "page", "data": {"text/plain": "x"}}]
    assert safe_payload([], ask_exit=True) == [{"source": "ask_exit", "keepkernel": False}]  # the worker's flag
    assert safe_payload([], ask_exit="yes") == []  # type: ignore[arg-type]  # only True
    notes: list[str] = []
    asked = [{"source": "set_next_input", "text": "import os", "replace": True, "extra": 1}]
    assert safe_payload(asked, notes) == [{"source": "set_next_input", "text": "import os", "replace": False}]
    assert notes and "replace" in notes[0]
    assert safe_payload([{"source": "set_next_input", "text": 5}]) == [
        {"source": "set_next_input", "text": "", "replace": False}
    ]


def test_kernel_spec_uses_absolute_interpreter() -> None:
    spec = kernel_spec(level="strict", isolation="basic")
    assert os.path.isabs(spec["argv"][0])
    assert spec["interrupt_mode"] == "message"
    assert "--SandboxKernel.level=strict" in spec["argv"]
    assert "--SandboxKernel.isolation=basic" in spec["argv"]
    assert spec["display_name"] == "Python 3 (sandboxed, strict, basic)"


def test_shipped_kernelspecs_match_install() -> None:
    import json

    root = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "jupyter-config", "kernels"
    )
    for name, level in DEFAULT_SPECS:  # glsandbox: no level on the argv (the config file's, else moderate)
        with open(os.path.join(root, name, "kernel.json"), encoding="utf-8") as fh:
            shipped = json.load(fh)
        expected = kernel_spec(level=level, python="python3")
        assert shipped == expected, name


_FORKED_WITH_SHELL = """
import sys
{prepare}
from glsandbox_kernel import OSSandbox, create_config_by_level

def probe():
    import sys
    return "glsandbox_kernel.worker.shell" in sys.modules, "IPython" in sys.modules

with OSSandbox(create_config_by_level("moderate")) as box:
    print(box.execute(probe))
"""


def test_the_kernels_workers_are_forked_with_the_cell_shell_imported() -> None:
    """prepare() (python -m glsandbox_kernel.kernel) starts the template with the shell pre-imported:
    a fresh worker has IPython before any cell; a library host's workers stay without it."""
    import subprocess

    def run(prepare: str) -> str:
        code = _FORKED_WITH_SHELL.format(prepare=prepare)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        return out.stdout.strip().splitlines()[-1]

    assert run("from glsandbox_kernel.kernel.prestart import prepare; prepare([])") == "(True, True)"
    assert run("") == "(False, False)"
