"""Outside review (13th, new user): ``exit`` in ``jupyter console --kernel glsandbox`` does not leave.

Failure: a new user drives ``jupyter console --kernel glsandbox`` (measured through a pty with
pexpect from a fresh wheel venv) and types ``exit`` (or ``quit``), as in every IPython
console. The line runs as a sandboxed cell ("glsandbox audit: cell 4 · ... · ok") and the
console prints the next ``In [5]:`` prompt: it never exits; only Ctrl-D leaves. The IPython
kernel answers ``exit`` with the ``ask_exit`` payload in its execute_reply, which is what
``jupyter console`` (and qtconsole) act on; the glsandbox kernel's reply has ``payload: []``
(the worker's ``exit`` ends nothing on the host side and nothing is relayed).

Measured here with a real kernel over jupyter_client: ``python3`` replies
``[{'source': 'ask_exit', 'keepkernel': False}]``, ``glsandbox`` replies ``[]``.

Severity: low (a door annoyance: the documented console use cannot be left the usual way).
Fix (suggested): the kernel (``kernel/`` execute path) recognises a cell that is exactly
``exit``/``quit``/``exit()``/``quit()`` (or the worker's ``SystemExit`` from them) and adds the
``ask_exit`` payload to the execute_reply, as ipykernel's ZMQInteractiveShell does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_outside5_common import need

pytestmark = pytest.mark.timeout(300)


def _reply(kernel_name: str, cwd: Path, code: str) -> dict:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name=kernel_name, cwd=str(cwd), startup_timeout=120)
    try:
        msg_id = kc.execute(code)
        while True:
            reply = kc.get_shell_msg(timeout=180)
            if reply["parent_header"].get("msg_id") == msg_id:
                return dict(reply["content"])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize("code", ["exit", "quit()"])
def test_exit_in_a_console_asks_the_frontend_to_exit(tmp_path: Path, code: str) -> None:
    need("namespace")
    reply = _reply("glsandbox", tmp_path, code)
    assert reply.get("status") == "ok", reply
    sources = [p.get("source") for p in reply.get("payload") or []]
    assert "ask_exit" in sources, (
        f"{code!r} in the glsandbox kernel: payload {reply.get('payload')!r}; jupyter console stays at its prompt"
    )
