"""Outside review 25b: a comm message from the frontend lets the sandbox rewrite an earlier cell's sealed output.

Severity: medium-low (audit integrity in live sessions: a sealed output changes after its cell ran, no
record says so; JupyterLab's widget manager opens a ``jupyter.widget.control`` comm when it connects, so
reopening the notebook may be enough to trigger it).

README (Evidence): "Display ids are scoped to the cell that showed them, so a later cell's
``update_display`` of an earlier cell's display appears as a new output of the later cell and never
rewrites a sealed output". For a request that is not a cell (a comm message the kernel delivers to the
sandbox, ``kernel.comm_request`` -> ``OSSandbox.send_comm``), ``IOPubRelay._scope_display`` maps an update
to ``DisplayScopes.latest(id)``: the latest cell's display of that id, whichever cell that was, sealed or not.
``send_comm`` writes no audit record (see also ``test_outside25b_written_between_calls``).

Attack: cell 1 shows ``display('accuracy 0.51', display_id='acc')`` (relayed as ``acc~c1``); cell 2 registers
a comm target whose open handler runs ``update_display('accuracy 0.99', display_id='acc')`` (any target
name the frontend will open: ``jupyter.widget.control`` is opened by ipywidgets' frontend manager on its own).
The "frontend" (jupyter_client here) opens a comm to that target.

What the host saw (real glsandbox kernel over ZMQ, measured): the kernel published, with the comm_open as
parent, ``update_display_data`` ``{'text/plain': "'accuracy 0.99'"}`` with ``display_id: 'acc~c1'``, cell 1's
own display id: a frontend (JupyterLab, nbclient alike) rewrites cell 1's sealed output; cell 1's record still
hashes 0.51 and nothing records the callback.

Expected: no update published from the sandbox carries the id of a display of an earlier, finished cell (an
update from a callback is dropped, or shown as an output of its own), or the README names the exception and
a record of the callback names what it changed.

Fix direction: in ``_scope_display`` return None for a comm-request update (as for an unknown id), unless the
display was created by a still-running cell; or give ``send_comm`` a record of its own listing the displays it
updated so verify can tell a widget's update from tampering.
"""

from __future__ import annotations

import queue
import time
import uuid

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec  # noqa: F401 - fixture
from .test_outside5_common import need

SHOW = "from IPython.display import display\ndisplay('accuracy 0.51', display_id='acc')"
REGISTER = """
import comm
from IPython.display import update_display
def on_open(c, msg):
    update_display('accuracy 0.99', display_id='acc')
comm.get_comm_manager().register_target('r25b', on_open)
"""


def test_a_comm_callback_cannot_update_an_earlier_cells_display(glsandbox_kernelspec: str) -> None:  # noqa: F811
    need("namespace")
    k = Kernel("glsandbox", extra_arguments=["--SandboxKernel.isolation=namespace"])
    try:
        reply, first = k.execute(SHOW, timeout=60)
        assert reply["status"] == "ok", reply
        sealed = {
            m["content"]["transient"]["display_id"]
            for m in first
            if m["msg_type"] == "display_data" and m["content"].get("transient", {}).get("display_id")
        }
        assert sealed, first
        reply, _ = k.execute(REGISTER, timeout=60)
        assert reply["status"] == "ok", reply
        msg = k.kc.session.msg("comm_open", {"comm_id": uuid.uuid4().hex, "target_name": "r25b", "data": {}})
        k.kc.shell_channel.send(msg)
        updates = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                m = k.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
            if m["msg_type"] == "update_display_data":
                updates.append(m["content"])
    finally:
        k.shutdown()
    rewritten = [u for u in updates if u.get("transient", {}).get("display_id") in sealed]
    assert not rewritten, (
        f"a comm callback in the sandbox made the kernel update cell 1's sealed display {sorted(sealed)}: {rewritten}"
    )
