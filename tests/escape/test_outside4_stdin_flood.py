"""Outside review (5th): a flood of ``input_request`` frames deadlocks the host past the cell's timeout.

Attack: the sandboxed cell sends 200 000 ``input_request`` frames on its own
channel without reading a reply. The host answers each one with a blocking
``FrameChannel.send`` of an ``input_reply`` from its read loop
(``session.py`` ``_read_until_reply``). Once the socket buffer towards the
worker is full, the host's send blocks; the host then reads nothing, so the
worker's sends block too. Neither side moves again, and the wall-clock timeout
is never checked (measured: ``run_cell(timeout=3)`` still blocked in
``protocol.py`` ``send`` after 60 s; faulthandler on the host). In the
kernel or the magic, the host kernel hangs for good.

Judged from the host: ``run_cell(timeout=3)`` returns (any status) within
20 s. The test kills the worker itself afterwards, so a hang cannot outlive it.

Fix (suggested): ``session.py`` ``_read_until_reply``: send input replies
non-blocking with the call's deadline (or queue them and refuse a second
``input_request`` before the first reply was read); never block the read
loop on a send to the worker.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(120)]

CELL = """
import gc, time
from glsandbox_kernel.worker.loop import Connection
conn = next(o for o in gc.get_objects() if isinstance(o, Connection))
for i in range(200000):
    conn.send({"type": "input_request", "prompt": "p", "password": False})
time.sleep(1)
"""


def test_an_input_request_flood_cannot_outlast_the_timeout() -> None:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
    sb = OSSandbox(cfg)
    sb.__enter__()
    done: list[Any] = []

    def run() -> None:
        try:
            done.append(sb.run_cell(CELL, on_input=lambda p, pw: "z" * 1000, allow_stdin=True, timeout=3))
        except Exception as exc:  # noqa: BLE001 - any end of the call counts as an end
            done.append(exc)

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(20)
    hung = caller.is_alive()
    if hung:  # unblock the host: kill the worker from outside, then close
        worker = sb.session.worker
        if worker is not None:
            worker.kill()
        caller.join(20)
    sb.__exit__(None, None, None)
    assert not hung, "run_cell(timeout=3) was still blocked after 20 s (host read loop stuck in send)"
