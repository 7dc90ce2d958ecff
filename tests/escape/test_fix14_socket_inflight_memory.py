"""Review 14 follow-up: socket buffers a cell hides from its fd tables still count (or stay bounded).

The outside monitor (no cgroup) finds the tree's sockets through ``/proc/PID/fd``. A cell can
fill socketpairs, pass both ends in an ``SCM_RIGHTS`` message over another pair and close its
own fds: the filled sockets are then "in flight", held only by the carrier's queue, in no fd
table. In a network namespace of its own (NAMESPACE) every socket there counts; on BASIC the
buffer size a socket may be given is held to the kernel default, so what it hides stays small.

Attack (as uid 65534, BASIC or rootless NAMESPACE at STRICT, 256 MiB, no cgroup): four children
each fill 30 pairs to the maximum, one at a time, sending each pair's two ends over a carrier
pair and closing them right after it is filled, and sleep; the host samples ``MemAvailable`` while the call runs.
"""

from __future__ import annotations

import pytest

from .test_outside13_common import memory_result, nobody_tmp, run_as_nobody
from .test_outside13_socket_buffer_memory import SCRIPT as FILL

pytestmark = pytest.mark.timeout(300)

# each pair is hidden right after it is filled, so the tree's fds never hold more than one
HIDE = """
                held.append((a, b))
                try:  # past the kernel's limit of fds in flight (RLIMIT_NOFILE per user): kept in fds
                    socket.send_fds(carrier[0], [b"f"], [a.fileno(), b.fileno()])
                except OSError:
                    continue
                a.close()
                b.close()
                held.pop()"""
SCRIPT = FILL.replace("\n                held.append((a, b))", HIDE, 1).replace(
    "            held = []", "            held = []\n            carrier = socket.socketpair()", 1
)


@pytest.mark.parametrize("isolation", ["basic", "namespace"])
def test_socket_buffers_in_flight_count_or_stay_bounded(isolation: str) -> None:
    assert SCRIPT.count("send_fds(") == 1 and "carrier = " in SCRIPT
    with nobody_tmp("fix14-inflight-") as tmp:
        proc = run_as_nobody(SCRIPT, isolation, tmp=tmp, timeout=280)
        limit, used, out = memory_result(proc)
        # killed by the memory guard, or ended with the host's memory under twice the limit
        assert "SandboxMemoryError" in out or used < 2 * limit, (
            f"the call ended ({out}) while the host's MemAvailable fell by {used >> 20} MiB, "
            f"over twice the sandbox's {limit >> 20} MiB limit"
        )


CAP = r"""
import socket, sys
from glsandbox_kernel import OSSandbox, create_config_by_level
from glsandbox_kernel.config import IsolationType

def probe():
    import socket
    a, b = socket.socketpair()
    before = a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 30)  # answered, not applied
    a.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # any other option applies as before
    return before, a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), a.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)

config = create_config_by_level("strict", isolation_type=IsolationType(sys.argv[1]), fallback_to_basic=False)
box = OSSandbox(config)
try:
    print("CAP", *box.execute(probe))
finally:
    box.close()
a, _ = socket.socketpair()
a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 30)
print("HOST", a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
"""


@pytest.mark.parametrize("isolation", ["basic", "namespace"])
def test_without_a_cgroup_socket_buffer_sizes_stay_the_default(isolation: str) -> None:
    with nobody_tmp("fix14-cap-") as tmp:
        proc = run_as_nobody(CAP, isolation, tmp=tmp, timeout=200)
        cap = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("CAP ")]
        host = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("HOST ")]
        assert cap and host, proc.stdout[-3000:] + proc.stderr[-3000:]
        before, after, keepalive = map(int, cap[0])
        assert after == before < int(host[0]), (before, after, host)  # the host's own socket did grow
        assert keepalive == 1
