"""input() in a glsandbox kernel cell that nobody answers: bounded by the cell's timeout (real kernels).

A notebook run without a human (or a frontend that never answers) must not
hang a cell past its limit: the wait for ``input_reply`` ends with the cell's
timeout, which ends the cell as any other timeout does (error reply, audit
record, worker killed, fresh sandbox next); an interrupt during that wait
still ends it at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, notices_of, stderr_of, stdout_of
from .test_kernel import kernel

__all__ = ["glsandbox_kernelspec", "kernel"]  # the fixtures, imported for pytest (one kernel for this module)

AUDIT_MIME = "application/vnd.glsandbox.audit+json"


def _audit(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(
        m["content"]["data"][AUDIT_MIME]
        for m in outputs
        if m["msg_type"] == "display_data" and AUDIT_MIME in m["content"]["data"]
    )


def _answers_the_next_input(kernel: Kernel) -> None:
    """The next input() gets the answer given to it (no late one to an earlier request)."""
    msg_id = kernel.kc.execute("print(input('again: '))", allow_stdin=True)
    assert kernel.kc.get_stdin_msg(timeout=30)["content"]["prompt"] == "again: "
    kernel.kc.input("on time")
    outputs = kernel.collect(msg_id)
    assert kernel.shell_reply(msg_id)["content"]["status"] == "ok"
    assert stdout_of(outputs) == "on time\n"


def test_unanswered_input_ends_at_the_cell_timeout(kernel: Kernel) -> None:
    reply, outputs = kernel.execute("%%sandbox --timeout 1\nimport time\ntime.sleep(3)")
    assert reply["ename"] == "SandboxTimeoutError"
    sleeping = _audit(outputs)

    kernel.execute("before = 1")
    msg_id = kernel.kc.execute("%%sandbox --timeout 2\nname = input('never answered: ')", allow_stdin=True)
    request = kernel.kc.get_stdin_msg(timeout=30)
    assert request["content"]["prompt"] == "never answered: "
    outputs = kernel.collect(msg_id, timeout=60)  # not answered: the cell's own timeout ends it
    reply = kernel.shell_reply(msg_id)["content"]
    assert reply["status"] == "error" and reply["ename"] == "SandboxTimeoutError", reply
    assert "2 s" in reply["evalue"]
    # The same error and audit record as a cell that ran out of time computing.
    waiting, computing = _audit(outputs)["record"], sleeping["record"]
    assert waiting["event_type"] == computing["event_type"] == "timeout"
    assert waiting["extra"]["error"].startswith("SandboxTimeoutError: execution exceeded the 2 s timeout")
    assert waiting["metrics"]["state_lost"] is computing["metrics"]["state_lost"] is True
    assert "state is lost" in (stderr_of(outputs) + notices_of(outputs))

    # The worker was replaced; a late answer to the abandoned request is not taken by the next one.
    kernel.kc.input("too late")
    reply, outputs = kernel.execute("print('alive', 'before' in dir())")
    assert reply["status"] == "ok" and stdout_of(outputs) == "alive False\n"
    _answers_the_next_input(kernel)


def test_interrupt_ends_a_bounded_input_wait(kernel: Kernel) -> None:
    kernel.execute("bounded = 'kept'")
    msg_id = kernel.kc.execute("%%sandbox --timeout 120\ninput('interrupt me: ')", allow_stdin=True)
    kernel.kc.get_stdin_msg(timeout=30)
    kernel.km.interrupt_kernel()
    kernel.collect(msg_id, timeout=60)  # well before the cell's 120 s
    assert kernel.shell_reply(msg_id)["content"]["ename"] == "KeyboardInterrupt"
    # The wait ended, and the same worker runs the next cell.
    reply, outputs = kernel.execute("print(bounded)")
    assert reply["status"] == "ok" and stdout_of(outputs) == "kept\n"


#: after the input_request reached the frontend: at once, and while the worker waits in input()
INTERRUPT_DELAYS = (0.0, 0.01, 0.1, 0.5)


@pytest.mark.parametrize("delay", INTERRUPT_DELAYS)
def test_interrupt_during_input_keeps_the_worker(kernel: Kernel, delay: float) -> None:
    """As in ipykernel: input() raises KeyboardInterrupt in the cell, the session keeps its state.

    Repeated: where the SIGINT lands in the worker's input() is a race, and one lost
    round (the worker killed, its state gone) is the bug.
    """
    for round_ in range(6):
        reply, _ = kernel.execute(f"kept = {round_}")
        assert reply["status"] == "ok", reply
        msg_id = kernel.kc.execute("answer = input('interrupt me: ')", allow_stdin=True)
        assert kernel.kc.get_stdin_msg(timeout=30)["content"]["prompt"] == "interrupt me: "
        if delay:
            time.sleep(delay)
        kernel.km.interrupt_kernel()
        outputs = kernel.collect(msg_id, timeout=60)
        reply = kernel.shell_reply(msg_id)["content"]
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", (round_, reply)
        assert "state" not in (stderr_of(outputs) + notices_of(outputs)), round_
        # A late answer to the interrupted request is dropped, not taken by the next input().
        kernel.kc.input("too late")
        reply, outputs = kernel.execute("print(kept, 'answer' in dir())")
        assert reply["status"] == "ok" and stdout_of(outputs) == f"{round_} False\n", (round_, outputs)
    _answers_the_next_input(kernel)


# -- the same through the library: OSSandbox.run_cell(on_input=...) and interrupt() ------------------


@pytest.mark.parametrize("delay", INTERRUPT_DELAYS)
def test_library_interrupt_during_input_keeps_the_worker(delay: float) -> None:
    """An answer that comes after the interrupt is dropped; the cell ends with KeyboardInterrupt."""
    with OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC)) as box:
        pid = box.run_cell("import os; os.getpid()").outputs[-1]["data"]["text/plain"]

        def answer_late(prompt: str, password: bool) -> str:
            interrupted = threading.Event()

            def interrupt() -> None:
                box.interrupt()
                interrupted.set()

            threading.Timer(delay, interrupt).start()
            assert interrupted.wait(30)
            time.sleep(0.2)  # the worker gave up on this answer by now
            return "late"

        for round_ in range(6):
            assert box.run_cell(f"kept = {round_}").status == "ok"
            result = box.run_cell("answer = input('interrupt me: ')", on_input=answer_late)
            assert result.status == "error" and result.error_name == "KeyboardInterrupt", (round_, result)
            after = box.run_cell("(kept, 'answer' in dir(), os.getpid())").outputs[-1]["data"]["text/plain"]
            assert after == f"({round_}, False, {pid})", round_


def test_library_input_after_an_interrupted_one_gets_its_own_answer() -> None:
    """A cell that catches the interrupt and asks again: the late answer to the first prompt is not
    taken by the second."""
    answers = {"first: ": "late", "second: ": "on time"}
    with OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC)) as box:

        def on_input(prompt: str, password: bool) -> str:
            if prompt == "first: ":
                box.interrupt()
                time.sleep(0.2)
            return answers[prompt]

        code = "try:\n    a = input('first: ')\nexcept KeyboardInterrupt:\n    a = 'interrupted'\nb = input('second: ')\na, b"
        result = box.run_cell(code, on_input=on_input)
        assert result.status == "ok", result
        assert result.outputs[-1]["data"]["text/plain"] == "('interrupted', 'on time')"


def test_library_interrupt_ends_input_with_no_answer_at_all() -> None:
    """An ``on_input`` that gives up after the interrupt (no answer is sent): the worker's input()
    ends on the SIGINT itself, not on an answer, so the worker is not killed after the grace."""
    from glsandbox_kernel.outputs import InputAbandoned

    with OSSandbox(OSSandboxConfig(isolation_type=IsolationType.BASIC)) as box:

        def give_up(prompt: str, password: bool) -> str:
            box.interrupt()
            raise InputAbandoned("nobody answers")

        for round_ in range(5):
            assert box.run_cell(f"kept = {round_}").status == "ok"
            result = box.run_cell("answer = input('interrupt me: ')", on_input=give_up)
            assert result.status == "error" and result.error_name == "KeyboardInterrupt", (round_, result)
            assert "killed" not in (result.error_value or ""), result.error_value
            assert box.run_cell("(kept, 'answer' in dir())").outputs[-1]["data"]["text/plain"] == f"({round_}, False)"
