"""Harden: a container sandbox could use up its uid's POSIX message queue budget, host-wide.

Docker and Podman mount a writable ``/dev/mqueue`` in the container's own
IPC namespace, and the seccomp profile admits ``mq_open``. The queues stay
in that namespace (nothing outside is reachable through them, and their
messages are charged to the container's memory cgroup), but the bytes they
reserve count against ``RLIMIT_MSGQUEUE`` (819 200) of the *uid*, which the
kernel tracks per user across the machine: every container sandbox runs as
65534. Measured from the host: a STRICT container sandbox made 9 queues
(10 x 8 KiB each), then ``EMFILE``; while it ran, a host process running as
uid 65534 could open none (``Too many open files``), nor could another
sandbox; it could again once the container ended. The namespace backend's
``mq_open`` fails (``EACCES``), so queues are no feature any sandbox has.

Expected: RLIMIT_MSGQUEUE 0 in the container, so the sandbox reserves
nothing and the uid's budget stays whole for everyone else. gVisor: its
queues are the sentry's own (120 made at any RLIMIT_MSGQUEUE, in the
sentry's memory, inside the container's cgroup); the host budget is untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level

from .test_outside5_common import need

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.container, pytest.mark.timeout(300)]

#: HOST side: make (and unlink) two default-sized queues; prints how many were made
HOST_MQ = r"""
import ctypes, os
class Attr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long),
                ("cur", ctypes.c_long), ("pad", ctypes.c_long * 4)]
rt = ctypes.CDLL("librt.so.1", use_errno=True)
rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(Attr)]
made = 0
for i in range(2):
    name = f"/glsandbox-harden-{os.getpid()}-{i}".encode()
    if rt.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(Attr(0, 10, 8192, 0))) < 0:
        break
    rt.mq_unlink(name)
    made += 1
print(made)
"""


def fill_queues(n: int) -> tuple[int, object]:
    """SANDBOX side: create default-sized POSIX message queues until the kernel refuses; (count, limit)."""
    import ctypes
    import os
    import resource

    class Attr(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long)]
        _fields_ += [("cur", ctypes.c_long), ("pad", ctypes.c_long * 4)]

    rt = ctypes.CDLL("librt.so.1", use_errno=True)
    rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(Attr)]
    made = 0
    for i in range(n):
        if rt.mq_open(f"/q{i}".encode(), os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(Attr(0, 10, 8192, 0))) < 0:
            break
        made += 1
    return made, resource.getrlimit(resource.RLIMIT_MSGQUEUE)


def _host_queues_as_sandbox_uid() -> int:
    """HOST side: how many queues a host process running as the sandbox's uid (65534) can open now."""
    ran = subprocess.run(
        ["/usr/bin/python3", "-S", "-c", HOST_MQ],  # the venv may be closed to that uid
        user=65534,
        group=65534,
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
        check=True,
    )
    return int(ran.stdout)


@pytest.mark.parametrize("backend", ["container", "gvisor"])
def test_container_sandbox_leaves_the_uid_queue_budget_alone(backend: str) -> None:
    need(backend)
    if os.geteuid() != 0 or not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("needs root and /usr/bin/python3 to run a host process as the sandbox's uid")
    if not Path("/dev/mqueue").exists() and _host_queues_as_sandbox_uid() == 0:
        pytest.skip("no POSIX message queues on this host")
    assert _host_queues_as_sandbox_uid() == 2  # the control, before any sandbox
    cfg = create_config_by_level("strict", isolation_type=IsolationType(backend))
    with OSSandbox(cfg) as sb:
        made, limit = sb.execute(fill_queues, 300)
        host = _host_queues_as_sandbox_uid()
    assert host == 2, (
        f"while a {backend} sandbox (which made {made} queues, RLIMIT_MSGQUEUE {limit}) ran, a host process "
        f"of its uid could open {host} of 2 message queues: the sandbox used up the uid's machine-wide budget"
    )
    if backend == "container":  # gVisor keeps its queues in the sentry (its memory, no host budget) at any limit
        assert made == 0, f"the sandbox reserved {made} message queues (RLIMIT_MSGQUEUE {limit})"
