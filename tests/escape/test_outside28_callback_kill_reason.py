"""Outside review 28: a widget callback the host kills is reported to the analyst as "it exited".

Severity: low. A frontend ``comm_msg`` reaches the sandbox's comm handler through
``SandboxKernel.comm_request`` -> ``OSSandbox.send_comm(..., timeout=30.0)``: a fixed 30 s, not the
kernel's ``timeout`` option (5 s here). A handler that never returns is killed by the host when those 30 s
are up; the next cell then gets the state-lost notice with ``_lost_reason`` unset, so it reads
"the sandbox worker was stopped (it exited)": the analyst is told the worker ended by itself, not that
the host stopped it because a widget callback ran past its time limit (nor which limit).

Judged from the host: the notice text of the next cell (``notices_of``) must name a time limit, not
"it exited".

Suggested fix: set ``_lost_reason`` when ``send_comm`` times out (as the cell path does for its own
limits), and bound a callback by the configured ``timeout`` (or document the 30 s).
"""

from __future__ import annotations

import pytest

from glsandbox_kernel.backends.registry import backends

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, notices_of  # noqa: F401 - fixture

OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(240)]

OPEN = """
import comm
c = comm.create_comm(target_name="jupyter.widget")
def handler(msg):
    while True:
        pass
c.on_msg(handler)
print(c.comm_id)
"""


def test_a_callback_killed_by_the_host_is_not_reported_as_exited(glsandbox_kernelspec: str) -> None:  # noqa: F811
    k = Kernel("glsandbox", extra_arguments=["--SandboxKernel.isolation=namespace", "--SandboxKernel.timeout=5"])
    try:
        reply, outputs = k.execute(OPEN, timeout=60)
        assert reply["status"] == "ok", reply
        opened = [m for m in outputs if m["msg_type"] == "comm_open"]
        assert opened, outputs
        msg = k.kc.session.msg("comm_msg", {"comm_id": opened[0]["content"]["comm_id"], "data": {"x": 1}})
        k.kc.shell_channel.send(msg)
        k.collect(msg["header"]["msg_id"], timeout=120)  # the delivery ends (the host stops the callback)
        reply, outputs = k.execute("1 + 1", timeout=60)
    finally:
        k.shutdown()
    notice = notices_of(outputs)
    assert "stopped" in notice, f"set-up: no state-lost notice: {outputs}"
    assert "it exited" not in notice, (
        f"the host stopped the worker for a widget callback that ran past its time, and the notice says: {notice!r}"
    )
    assert "5 s" in notice, f"the callback is not bounded by the kernel's timeout (5 s): {notice!r}"
