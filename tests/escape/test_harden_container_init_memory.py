"""Harden: a container sandbox could write into its docker-init's memory and run code there.

The review noted that docker-init (pid 1 from ``--init``) keeps the daemon's
RLIMIT_NOFILE (20 000 measured) while the worker is lowered to 128. Worse:
docker-init runs as the worker's uid (65534), dumpable, with no capabilities,
so the kernel's ptrace check let the worker open ``/proc/1/mem`` read-write.
docker-init is not under the bootstrap's seccomp filter: only the OCI profile,
which (with the supervisor on) leaves the escape class to that filter.
Measured from the host: a STRICT container sandbox wrote 16 bytes into
docker-init's stack, and the host read them back from ``/proc/<init>/mem``;
written over the code after the syscall docker-init sleeps in, six
instructions ran ``unshare(CLONE_NEWUSER)`` in docker-init and exited with its
result: the container's exit code was 0 (success; a control with an invalid
flag gave 234, -EINVAL), the escape-class call the supervisor stops in the
worker, run unseen. gVisor refuses the open (EACCES).

Expected: the worker cannot open its init's memory (a Landlock domain of the
bootstrap's own fences it off its ancestors), so the host reads back nothing it wrote.
"""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.confinement.landlock import landlock_abi

from .test_outside5_common import need

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.container, pytest.mark.timeout(300)]

MARKER = b"GLSANDBOX-HARDEN"


def poke_init(marker: bytes) -> tuple[int, str]:
    """SANDBOX side: write ``marker`` into pid 1's stack through /proc/1/mem; (address, what happened)."""
    import os

    addr = 0
    try:
        with open("/proc/1/maps") as fh:
            addr = next(int(line.split("-")[0], 16) + 256 for line in fh if line.rstrip().endswith("[stack]"))
    except OSError as exc:
        return addr, f"maps: {exc.strerror}"
    try:
        fd = os.open("/proc/1/mem", os.O_RDWR)
    except OSError as exc:
        return addr, f"open: {exc.strerror}"
    try:
        return addr, f"wrote {os.pwrite(fd, marker, addr)}"
    except OSError as exc:
        return addr, f"pwrite: {exc.strerror}"
    finally:
        os.close(fd)


def test_worker_cannot_write_into_its_init() -> None:
    need("container")
    if landlock_abi() <= 0:
        pytest.skip("no Landlock in this kernel: nothing fences docker-init (see ptrace_fence)")
    cfg = create_config_by_level("strict", isolation_type=IsolationType.CONTAINER)
    with OSSandbox(cfg) as sb:
        worker = sb._session.worker
        assert worker is not None
        init_pid = getattr(worker, "init_pid", None)
        assert init_pid, "the container backend names its init's host pid"
        addr, what = sb.execute(poke_init, MARKER)
        seen = b""
        if addr:
            with open(f"/proc/{init_pid}/mem", "rb") as mem:  # HOST side: the init's memory as it is
                mem.seek(addr)
                seen = mem.read(len(MARKER))
    assert seen != MARKER, (
        f"the sandbox wrote into docker-init's memory ({what} at {addr:#x}; the host reads {seen!r} back): "
        "code there runs outside the worker's seccomp filter and supervisor"
    )
    assert what.startswith(("open:", "maps:")), what
