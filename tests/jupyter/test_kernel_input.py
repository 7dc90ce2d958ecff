"""input() in a glsandbox kernel cell that nobody answers: bounded by the cell's timeout (real kernels).

A notebook run without a human (or a frontend that never answers) must not
hang a cell past its limit: the wait for ``input_reply`` ends with the cell's
timeout, which ends the cell as any other timeout does (error reply, audit
record, worker killed, fresh sandbox next); an interrupt during that wait
still ends it at once.
"""

from __future__ import annotations

from typing import Any

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
    msg_id = kernel.kc.execute("print(input('again: '))", allow_stdin=True)
    assert kernel.kc.get_stdin_msg(timeout=30)["content"]["prompt"] == "again: "
    kernel.kc.input("on time")
    outputs = kernel.collect(msg_id)
    assert kernel.shell_reply(msg_id)["content"]["status"] == "ok"
    assert stdout_of(outputs) == "on time\n"


def test_interrupt_ends_a_bounded_input_wait(kernel: Kernel) -> None:
    msg_id = kernel.kc.execute("%%sandbox --timeout 120\ninput('interrupt me: ')", allow_stdin=True)
    kernel.kc.get_stdin_msg(timeout=30)
    kernel.km.interrupt_kernel()
    kernel.collect(msg_id, timeout=60)  # well before the cell's 120 s
    assert kernel.shell_reply(msg_id)["content"]["ename"] == "KeyboardInterrupt"
    # Whether the worker's state survives depends on where in input() the SIGINT lands (a race in
    # the worker, left to its owner); the wait ended, and the kernel runs the next cell either way.
    reply, outputs = kernel.execute("print('next')")
    assert reply["status"] == "ok" and stdout_of(outputs) == "next\n"
