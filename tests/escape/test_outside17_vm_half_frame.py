"""Outside review 18: a 14-byte half-frame from the guest makes the host hold the memory limit.

Severity: medium (every VM sandbox; the same channel code serves the other backends' data socket).

Attack: code in a STRICT VM guest (uid 65534) finds its data port (``/dev/vport*p1``, fd 3 in
the worker) and writes a frame header announcing 250 MiB (under the cap, which follows the
memory limit: ``frame_cap`` = max(64 MiB, limit)) plus 10 bytes, then sleeps.

What the host saw: the host process's VmRSS grew by ~250 MiB (28 -> 284 MiB in the measured
run) for 14 bytes sent; the call ran into its timeout, QEMU was killed (held: timeout, kill,
record), and the host's RSS stayed up after the call had ended. The guest's own RAM is
the limit, so one sandbox pins about twice its limit (guest RAM in QEMU plus the same again in
the host process), and several VM sandboxes in one host process multiply it at no cost.

Expected: the host commits memory as frame bytes arrive (grow the buffer in steps, or read
into pages it does not touch ahead), not the announced length up front, and frees it when
the call ends.

Fix direction: ``protocol.py`` ``FrameChannel._start_big`` (``bytearray(length)`` before any
payload has arrived) and the ``before_large_frame`` path; drop ``_big`` on timeout/kill.
"""

from __future__ import annotations

import gc
import os

import pytest

from glsandbox_kernel import OSSandbox
from glsandbox_kernel.backends.vm import VMBackend
from glsandbox_kernel.config import IsolationType, create_config_by_level
from glsandbox_kernel.exceptions import SandboxTimeoutError

MiB = 1 << 20
_OK, _WHY = VMBackend.available()


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _half_frame() -> None:
    import os
    import struct
    import time

    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "vport" in target and target.endswith("p1"):
            os.write(int(fd), struct.pack(">I", 250 * 1024 * 1024) + b"\0" * 10)
    time.sleep(1000)


def test_half_frame_does_not_commit_the_announced_size_on_the_host() -> None:
    if not _OK:
        pytest.skip(f"VM backend unavailable here: {_WHY}")
    cfg = create_config_by_level(
        "strict", isolation_type=IsolationType.VM, execution_timeout=20, interrupt_grace_seconds=5
    )
    box = OSSandbox(cfg)
    box.start()
    try:
        box.execute(lambda: 1)
        gc.collect()
        before = _rss()
        with pytest.raises(SandboxTimeoutError):
            box.execute(_half_frame)
        gc.collect()
        grown = _rss() - before
    finally:
        pids = box.worker_pids
        box.close()
    assert all(not os.path.exists(f"/proc/{p}") for p in pids)
    assert grown < 64 * MiB, f"host RSS grew by {grown // MiB} MiB for a 14-byte half-frame from the guest"
