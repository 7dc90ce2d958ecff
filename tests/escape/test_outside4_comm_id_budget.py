"""Outside review (5th): a sandbox comm's ``comm_id`` is not counted by the output budget.

Attack: the sandboxed cell sends, on its own channel, ``comm_open`` frames
with empty ``data`` and a 512 KiB ``comm_id`` each (and ``comm_close``, which
is never counted at all). ``OutputBudget.admit_comm`` counts 256 bytes plus
the ``data`` of a frame, so each such frame costs 256 bytes of a budget of
at most 128 MiB: some 500 000 of them are admitted per cell, each handed to
the host's ``on_comm`` (the kernel republishes it on IOPub and keeps every
comm id in ``CommGate._ids`` for the kernel's life).

Judged from the host: the bytes the host's ``on_comm`` received for one cell
stay within the largest output budget (``MAX_BUDGET``, 128 MiB); measured:
150 MiB of comm ids in one cell, all delivered.

Fix (suggested): ``output_budget.py`` ``admit_comm``: count the whole
content (``comm_id``, ``target_name``, ``data``) and budget ``comm_close``
too; bound a comm id's length (``kernel/relay.py`` ``comm_content``).
"""

from __future__ import annotations

from typing import Any

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.output_budget import MAX_BUDGET

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(120)]

ID_LEN = 512 << 10
COUNT = MAX_BUDGET // ID_LEN + 44
CELL = f"""
import gc
from glsandbox_kernel.worker.loop import Connection
conn = next(o for o in gc.get_objects() if isinstance(o, Connection))
pad = "x" * {ID_LEN}
for i in range({COUNT}):
    cid = "%08d" % i + pad
    conn.send({{"type": "comm_open", "content": {{"comm_id": cid, "target_name": "jupyter.widget", "data": {{}}}},
               "metadata": {{}}, "buffers": []}})
"""


def _delivered(cell: str, *, with_id: bool) -> int:
    """Bytes of comm frames the host's ``on_comm`` received for one namespace cell."""
    cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
    got = [0]

    def on_comm(msg: dict[str, Any]) -> None:
        content = msg.get("content") or {}
        got[0] += len(repr(content.get("data"))) + (len(str(content.get("comm_id", ""))) if with_id else 0)

    with OSSandbox(cfg) as sb:
        result = sb.run_cell(cell, on_comm=on_comm)
    assert result.status in ("ok", "error"), result
    return got[0]


def test_comm_ids_count_against_the_output_budget() -> None:
    got = _delivered(CELL, with_id=True)
    assert got <= MAX_BUDGET, f"one cell delivered {got >> 20} MiB of comm frames to the host"


CLOSE_CELL = f"""
import gc
from glsandbox_kernel.worker.loop import Connection
conn = next(o for o in gc.get_objects() if isinstance(o, Connection))
conn.send({{"type": "comm_open", "content": {{"comm_id": "c", "target_name": "jupyter.widget", "data": {{}}}},
           "metadata": {{}}, "buffers": []}})
blob = "y" * {ID_LEN}
for i in range({COUNT}):
    conn.send({{"type": "comm_close", "content": {{"comm_id": "c", "data": {{"blob": blob}}}},
               "metadata": {{}}, "buffers": []}})
"""


def test_comm_close_data_counts_against_the_output_budget() -> None:
    """``comm_close`` frames are admitted without any budget (``outputs.py`` ``handle``): 150 MiB of data."""
    got = _delivered(CLOSE_CELL, with_id=False)
    assert got <= MAX_BUDGET, f"one cell delivered {got >> 20} MiB of comm_close data to the host"
