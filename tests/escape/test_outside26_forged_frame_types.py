"""Outside review 26: a forged frame whose ``id`` (or stream ``name``) is an array leaves the call with no record.

Severity: medium-high (audit integrity: code ran in the sandbox and the session's chain holds no
record of it; the library's ``execute``/``run_cell`` and everything built on them).

Attack: sandboxed code writes its own frame to the worker's channel (``sys.stdout.conn.send``, as
earlier reviews' reproducers do): a ``result`` whose ``id`` is ``numpy.arange(3)``, or a ``stream``
whose ``name`` is ``numpy.array(["stdout", "stderr"])``. The restricted codec carries arrays.

What the host saw (before the fix, NAMESPACE, STRICT): the session's read loop compares the id with
its request counter (``rid != self._req_id``), which for an array is an array, and ``if`` of it
raises ``ValueError: The truth value of an array ... is ambiguous`` on the host; ``relay_streams``
does the same with ``name == "stderr"``. ``execute`` raised that bare ``ValueError``, before any
record: the chain held only ``session_start``.

Expected: a frame whose fields are not the types the worker sends (``id`` an int or None, a
stream's ``name`` and ``text`` text) is refused on arrival as a protocol violation: the worker is
killed, the call fails with a ``SandboxError``, and its record (with the violation) is written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.exceptions import SandboxError

from .test_outside5_common import need

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.timeout(240)


def forge(kind: str) -> int:
    """SANDBOX side: one forged frame with an array where the worker sends an int or text, then return."""
    import sys
    import time

    import numpy as np

    if kind == "id":
        frame: dict[str, Any] = {"type": "result", "id": np.arange(3), "ok": True, "value": 7}
    elif kind == "bool_id":
        frame = {"type": "result", "id": True, "ok": True, "value": 7}
    else:
        frame = {"type": "stream", "name": np.array(["stdout", "stderr"]), "text": "forged"}
    sys.stdout.conn.send(frame)  # type: ignore[attr-defined]
    time.sleep(0.3)
    return 1


@pytest.mark.parametrize("kind", ["id", "bool_id", "stream_name"])
def test_a_forged_field_type_is_a_recorded_protocol_violation(tmp_path: Path, kind: str) -> None:
    need("namespace")
    config = create_config_by_level(
        "strict", isolation_type=IsolationType.NAMESPACE, audit_log_path=str(tmp_path / "audit.jsonl")
    )
    with OSSandbox(config) as sandbox:
        raised: BaseException | None = None
        try:
            sandbox.execute(forge, kind)
        except BaseException as exc:  # noqa: BLE001 - what the host caller got is the finding
            raised = exc
        records = [r for r in sandbox.audit_records if r.get("event_type") != "session_start"]
        assert sandbox.execute(int, "5") == 5, "the next call must get a fresh worker"
    assert isinstance(raised, SandboxError), f"the host's execute raised {type(raised).__name__}: {str(raised)[:160]}"
    calls = [r for r in records if (r.get("extra") or {}).get("kind") == "call"]
    assert calls, f"the call ran in the sandbox but the chain holds no record of it: {records}"
    text = repr(records)
    assert "protocol violation" in text, f"no protocol violation recorded: {text[:1500]}"
