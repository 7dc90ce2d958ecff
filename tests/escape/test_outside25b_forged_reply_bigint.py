"""Outside review 25b: a forged reply with a 20 000-digit ``ename`` leaves the cell (or call) with no record.

Severity: medium-high (audit integrity: code ran in the sandbox, the session's chain has no record
of it and still verifies; every entry point: the library's ``run_cell``/``execute``, the
``%%sandbox`` magic and the glsandbox kernel, which call them).

Attack: sandboxed code writes its own reply frame to the worker's channel
(``sys.stdout.conn.send``, as earlier reviews' reproducers do) before the worker's real one: a
``cell_reply`` (for a cell) or a ``result`` (for a function call) with ``status: error`` /
``ok: False`` and ``ename = 2**20000``. The reply's id is the host's request counter: the cell
finds it in its worker's request dict (``gc``), a function just sends one frame per small id (the
host skips stale ids silently). The restricted codec carries ints of any size.

Third door, no id needed: an ``input_request`` frame whose ``prompt`` is ``2**20000``
(``outputs.OutputCollector.handle`` does ``str(msg.get("prompt"))`` when the caller answers
input, as the kernel with a stdin-capable frontend and the magic always do): the same
``ValueError`` leaves ``session.request`` from its read loop, and no record is written.

What the host saw: ``OSSandbox.run_cell`` does ``str(reply.get("ename"))`` (and ``evalue``, each
traceback line) and ``results.exception_from_reply`` the same for a call; ``str`` of an int past
4300 digits raises ``ValueError`` (Python's int string limit) on the host, before
``_record_outcome``. The caller gets a bare ``ValueError: Exceeds the limit (4300 digits) for
integer string conversion`` (a host bug, not a sandbox error), the JSONL chain holds only
``session_start`` (the cell's or call's record is never written), and what the cell printed after
the forged reply is shown and recorded under the *next* cell. Measured on namespace, STRICT. Through
``glsandbox run`` (kernel, MODERATE): the cell shows ``ValueError: Exceeds the limit ...``, the
``--audit`` JSONL verifies ``OK ... chain intact`` without any record of the cell, and the notebook's
verify blames the notebook: "cell 2 ... has no audit record: it did not run in the glsandbox sandbox,
or it was inserted" (it did run there).

Expected: whatever the reply holds, the cell/call ends with an error the sandbox is blamed for
(``SandboxError`` / ``SandboxRemoteError``, or a ``protocol`` violation) and its audit record is
written (README/ARCHITECTURE: "no content a cell produces can stop its record from being written").

Fix direction: build ``error_name``/``error_value``/traceback lines (``sandbox.run_cell``) and
``ename``/``evalue``/``tb`` (``results.exception_from_reply``) with a bounded, never-raising text
conversion (``outputs._text`` / ``magics.transfer.key_name`` style: a non-str is named by its
type), and treat a reply whose fields are not the types the worker sends as tampering.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.exceptions import SandboxError

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(240)]

CELL = r"""
import gc, sys
rid = max(o["id"] for o in gc.get_objects() if type(o) is dict and o.get("type") == "cell" and "code" in o)
sys.stdout.conn.send({"type": "cell_reply", "id": rid, "status": "error", "ename": 2**20000, "evalue": "x",
                      "traceback": []})
print("after the forged reply")
"""


PROMPT = r"""
import sys, time
sys.stdout.conn.send({"type": "input_request", "prompt": 2**20000, "password": False})
time.sleep(0.3)
print("after the forged prompt")
"""


def forging_call() -> int:
    """SANDBOX side: one forged error reply per small request id, then the honest return."""
    import sys
    import time

    for rid in range(1, 40):
        sys.stdout.conn.send(  # type: ignore[attr-defined]
            {"type": "result", "id": rid, "ok": False, "ename": 2**20000, "evalue": "x", "traceback": []}
        )
    time.sleep(0.2)
    return 1


def _kinds(sandbox: OSSandbox) -> list[str]:
    return [
        str((r.get("extra") or {}).get("kind")) for r in sandbox.audit_records if r.get("event_type") != "session_start"
    ]


def _config(tmp_path: Path) -> object:
    return create_config_by_level(
        "strict", isolation_type=IsolationType.NAMESPACE, audit_log_path=str(tmp_path / "audit.jsonl")
    )


def _outcome(tmp_path: Path, run: Callable[[OSSandbox], object]) -> tuple[BaseException | None, list[str]]:
    """What ``run(sandbox)`` raised on the host (None: nothing), and the kinds of the session's records."""
    with OSSandbox(_config(tmp_path)) as sandbox:  # type: ignore[arg-type]
        raised: BaseException | None = None
        try:
            run(sandbox)
        except BaseException as exc:  # noqa: BLE001 - what the host caller got is the finding
            raised = exc
        return raised, _kinds(sandbox)


@pytest.mark.parametrize("code", [CELL, PROMPT], ids=["cell_reply", "input_prompt"])
def test_a_forged_frame_cannot_stop_the_cells_record(tmp_path: Path, code: str) -> None:
    raised, kinds = _outcome(
        tmp_path, lambda sandbox: sandbox.run_cell(code, on_input=lambda prompt, password: "an answer")
    )
    assert raised is None or isinstance(raised, SandboxError), (
        f"the host's run_cell raised a bare {type(raised).__name__}: {str(raised)[:120]}"
    )
    assert "cell" in kinds, f"the cell ran in the sandbox but the chain holds no record of it: {kinds}"


def test_a_forged_call_reply_cannot_stop_the_calls_record(tmp_path: Path) -> None:
    raised, kinds = _outcome(tmp_path, lambda sandbox: sandbox.execute(forging_call))
    assert raised is None or isinstance(raised, SandboxError), (
        f"the host's execute raised a bare {type(raised).__name__}: {str(raised)[:120]}"
    )
    assert "call" in kinds, f"the call ran in the sandbox but the chain holds no record of it: {kinds}"
