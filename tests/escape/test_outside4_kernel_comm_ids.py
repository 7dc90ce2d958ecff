"""Outside review (5th): the glsandbox kernel keeps every comm id the sandbox ever opened.

Attack: each cell sends ``comm_open`` frames with a 512 KiB ``comm_id`` and
empty ``data`` (80 MiB of ids per cell; the output budget counts 256 bytes a
frame, see ``test_outside4_comm_id_budget.py``). ``CommGate.refuse`` adds
every id to ``CommGate._ids`` and nothing ever removes one (not even
``comm_close``), so the host kernel's memory grows by the ids of every cell
for the kernel's life: a sandbox can exhaust the host kernel's memory a cell
at a time.

Judged from the host: the kernel process's RSS (psutil), after three such
cells, has grown by less than two cells' worth of ids (measured: it grows by
about all three cells' 240 MiB), and the next cell still runs.

Fix (suggested): ``kernel/relay.py`` ``CommGate``: bound the number and the
length of comm ids a sandbox may open (refuse past it), and forget an id on
``comm_close`` and when the session's worker is replaced.
"""

from __future__ import annotations

import psutil
import pytest

from glsandbox_kernel.backends.registry import backends

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec  # noqa: F401 - fixture

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(180)]

ID_LEN = 512 << 10
PER_CELL = 160
CELL = f"""
import gc
from glsandbox_kernel.worker.loop import Connection
conn = next(o for o in gc.get_objects() if isinstance(o, Connection))
pad = "x" * {ID_LEN}
for i in range({PER_CELL}):
    conn.send({{"type": "comm_open", "content": {{"comm_id": "%d-%08d" % (CELL_NO, i) + pad, "target_name": "jupyter.widget",
               "data": {{}}}}, "metadata": {{}}, "buffers": []}})
"""


def test_the_kernel_does_not_keep_every_sandbox_comm_id(glsandbox_kernelspec: str) -> None:  # noqa: F811
    k = Kernel("glsandbox", extra_arguments=["--SandboxKernel.isolation=namespace"])
    try:
        reply, _ = k.execute("1 + 1", timeout=60)
        assert reply["status"] == "ok", reply
        before = psutil.Process(k.pid).memory_info().rss
        for n in range(3):
            reply, _ = k.execute(f"CELL_NO = {n}\n" + CELL, timeout=60)
        after = psutil.Process(k.pid).memory_info().rss
        reply, _ = k.execute("1 + 1", timeout=60)
        assert reply["status"] == "ok", reply
    finally:
        k.shutdown()
    grown = (after - before) >> 20
    assert grown < 2 * PER_CELL * ID_LEN >> 20, f"the host kernel grew by {grown} MiB over 3 cells of comm ids"
