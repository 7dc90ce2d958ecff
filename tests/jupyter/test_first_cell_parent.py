"""JupyterLab's first cell: its status and outputs carry its own request, over a real kernel.

When JupyterLab opens a notebook on a fresh kernel it sends, in quick
succession and before the sandbox has started: ``history_request``, the
widget manager's ``comm_open`` on ``jupyter.widget.control`` and its
``comm_msg`` ``request_states``, then the first ``execute_request``.
ipykernel 7 runs every shell message in one shared ``contextvars`` context
and dispatches comm messages concurrently with the request holding the
shell lock, saving and restoring the shell parent around them; a comm
handler that waited for the sandbox's start restored the history request's
parent while the cell ran, and the cell's ``idle`` went out under the history
request: JupyterLab kept the cell at ``[*]``. The widget manager also got no
``update_states`` answer (the worker had no control target).

Judged at the protocol level, from a ``jupyter_client`` frontend over ZMQ:
every IOPub message of each request carries that request as parent, the cell
gets exactly one ``busy`` and one ``idle``, and the control comm answers.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec

__all__ = ["glsandbox_kernelspec"]

pytestmark = pytest.mark.timeout(300)

IDLE = {"execution_state": "idle"}
CELL = "import time\ntime.sleep(0.5)\nprint('first cell done')"


@pytest.fixture
def fresh_kernel(glsandbox_kernelspec: str) -> Iterator[Kernel]:
    """A kernel just started (its sandbox still starting): the state JupyterLab finds it in."""
    k = Kernel("glsandbox")
    try:
        yield k
    finally:
        k.shutdown()


def _send(kernel: Kernel, msg_type: str, content: dict[str, Any]) -> str:
    msg = kernel.kc.session.msg(msg_type, content)
    kernel.kc.shell_channel.send(msg)
    return str(msg["header"]["msg_id"])


def _iopub_until(kernel: Kernel, done: Any, timeout: float) -> list[dict[str, Any]]:
    """IOPub messages until ``done(messages)`` holds and 1 s passed quietly, or ``timeout``."""
    msgs: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msgs.append(kernel.kc.get_iopub_msg(timeout=1.0))
        except queue.Empty:
            if done(msgs):
                return msgs
    return msgs


def _statuses(msgs: list[dict[str, Any]], msg_id: str) -> list[str]:
    return [
        m["content"]["execution_state"]
        for m in msgs
        if m["msg_type"] == "status" and m["parent_header"].get("msg_id") == msg_id
    ]


@pytest.mark.parametrize("attempt", range(3))
def test_the_first_cell_after_jupyterlabs_start_sequence_ends_under_its_own_request(
    fresh_kernel: Kernel, attempt: int
) -> None:
    kernel = fresh_kernel
    kernel.flush_iopub()
    control = uuid.uuid4().hex
    history = kernel.kc.history(hist_access_type="tail", n=1000, output=False, raw=True)
    _send(
        kernel,
        "comm_open",
        {"comm_id": control, "target_name": "jupyter.widget.control", "data": {}},
    )
    # JupyterLab's widget manager asks for the widgets' states; its metadata names the control protocol
    asked = kernel.kc.session.msg(
        "comm_msg", {"comm_id": control, "data": {"method": "request_states"}}, metadata={"version": "1.0.0"}
    )
    kernel.kc.shell_channel.send(asked)
    asked_id = asked["header"]["msg_id"]
    cell = kernel.kc.execute(CELL, allow_stdin=False)

    replies: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 120
    while not {history, cell} <= set(replies) and time.monotonic() < deadline:
        reply = kernel.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        replies[reply["parent_header"].get("msg_id")] = reply
    assert {history, cell} <= set(replies), f"replies for {set(replies)} only"
    assert replies[history]["msg_type"] == "history_reply"
    assert replies[cell]["msg_type"] == "execute_reply" and replies[cell]["content"]["status"] == "ok"

    msgs = _iopub_until(kernel, lambda ms: "idle" in _statuses(ms, cell), timeout=60)
    by_parent = [(m["msg_type"], m["parent_header"].get("msg_type"), m["parent_header"].get("msg_id")) for m in msgs]
    shown = [(m["msg_type"], m["parent_header"].get("msg_type"), str(m["content"])[:200]) for m in msgs]
    assert _statuses(msgs, cell) == ["busy", "idle"], f"the cell's status: {_statuses(msgs, cell)}; all {shown}"
    assert _statuses(msgs, history) == ["busy", "idle"], f"history's status: {_statuses(msgs, history)}; {shown}"
    for msg_id in {m["parent_header"].get("msg_id") for m in msgs if m["msg_type"] == "status"}:
        assert _statuses(msgs, msg_id) == ["busy", "idle"], f"{msg_id}: {_statuses(msgs, msg_id)}; {shown}"
    idle = next(i for i, m in enumerate(msgs) if m["parent_header"]["msg_id"] == cell and m["content"] == IDLE)
    late = [shown[i] for i, m in enumerate(msgs) if i > idle and m["parent_header"].get("msg_id") == cell]
    assert not late, f"the cell's messages after its idle: {late}"
    printed = [m for m in msgs if m["msg_type"] == "stream" and "first cell done" in m["content"]["text"]]
    assert printed and all(m["parent_header"]["msg_id"] == cell for m in printed), shown
    inputs = [m for m in msgs if m["msg_type"] == "execute_input"]
    assert [m["parent_header"]["msg_id"] for m in inputs] == [cell], shown

    answers = [
        m
        for m in msgs
        if m["msg_type"] == "comm_msg"
        and m["content"].get("comm_id") == control
        and (m["content"].get("data") or {}).get("method") == "update_states"
    ]
    closed = [m for m in msgs if m["msg_type"] == "comm_close" and m["content"].get("comm_id") == control]
    assert answers and not closed, f"the widget control comm got no update_states (closed: {bool(closed)}); {shown}"
    assert answers[0]["parent_header"]["msg_id"] == asked_id, by_parent
    assert answers[0]["content"]["data"].get("states") == {}, answers[0]["content"]
