"""Outside review: on BASIC, ``clone(CLONE_PARENT)`` puts a process beside the worker, outside every limit.

Attack: the worker calls ``clone(CLONE_PARENT | SIGCHLD)``; the new process
is a child of the zygote *template*, a sibling of the worker, not below it.
BASIC has no cgroup here: memory is the outside monitor's sum over the
worker's tree (``memory_guard.py`` over ``descendants(root_pid)``), so the
sibling is not measured and not killed over the limit. Measured here at
STRICT (256 MiB): the sibling held 416 MiB resident, the next call ran, and
``metrics.memory_peak_bytes`` said 17 MiB. (The template kills it when the
worker dies, so it does not outlive ``close()``; NAMESPACE held: its cgroup
counted the sibling.) The seccomp filter denies clone's namespace flags but
not ``CLONE_PARENT``.

Judged from the host: either the clone is refused, or the sibling is held to
the limit (killed, the call failing with SandboxMemoryError) within a few
seconds of allocating past it.

Fix (suggested): ``confinement/seccomp.py``: deny ``clone`` with
``CLONE_PARENT`` (and ``CLONE_THREAD`` without ``CLONE_VM`` is already
invalid) as it denies ``CLONE_NEW*``, recorded as a violation; and/or let the
monitor and ``host_pids()`` count every process of the template that is not
another worker (``backends/zygote_worker.py``).
"""

from __future__ import annotations

import sys
import time

import cloudpickle
import psutil
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, SandboxEscapeError, SandboxMemoryError, create_config_by_level
from glsandbox_kernel.backends.registry import backends

cloudpickle.register_pickle_by_value(sys.modules[__name__])

OK, WHY = backends()["basic"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"basic: {WHY}"), pytest.mark.timeout(120)]

SYS_CLONE = {"x86_64": 56, "aarch64": 220}
CLONE_PARENT = 0x00008000
SIGCHLD = 17


def attack_sibling(mib: int, nr: int) -> int:
    """SANDBOX side: clone(CLONE_PARENT) a process that holds ``mib`` MiB; its pid, or -errno."""
    import ctypes
    import os
    import time

    libc = ctypes.CDLL(None, use_errno=True)
    r, w = os.pipe()
    pid = libc.syscall(nr, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        blocks = [bytearray(1 << 20) for _ in range(mib)]
        for b in blocks:
            b[::4096] = b"x" * len(b[::4096])
        os.write(w, b"k")
        while True:
            time.sleep(0.5)
    if pid < 0:
        return -ctypes.get_errno()
    os.close(w)  # EOF on r if the sibling is killed before it is ready
    os.read(r, 1)
    return int(pid)


def _rss(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.NoSuchProcess:
        return None


def test_basic_clone_parent_sibling_is_held_to_the_memory_limit() -> None:
    import platform

    nr = SYS_CLONE.get(platform.machine())
    if nr is None:
        pytest.skip(f"no clone syscall number for {platform.machine()}")
    cfg = create_config_by_level("strict", isolation_type=IsolationType.BASIC)
    limit = cfg.limits.memory_limit_bytes
    assert limit is not None
    with OSSandbox(cfg) as sb:
        try:
            pid = sb.execute(attack_sibling, (limit >> 20) + 160, nr)
        except SandboxMemoryError:
            return  # held to the limit: the tree, sibling included, was stopped
        except SandboxEscapeError as exc:  # denied by seccomp and recorded by the supervisor
            assert "CLONE_PARENT" in str(exc)
            return
        if pid <= 0:
            return  # refused
        deadline = time.monotonic() + 10  # the monitor samples several times a second
        while time.monotonic() < deadline:
            rss = _rss(pid)
            if rss is None or rss <= limit:
                return
            time.sleep(0.25)
        rss = _rss(pid)
        peak = sb.metrics.memory_peak_bytes
    assert rss is None or rss <= limit, (
        f"a CLONE_PARENT sibling of the worker holds {rss >> 20} MiB with a limit of {limit >> 20} MiB "
        f"(metrics peak {None if peak is None else peak >> 20} MiB)"
    )
