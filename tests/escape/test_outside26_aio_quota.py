"""Outside review 26: a sandbox takes the machine's AIO contexts (``io_setup``) from the host.

Severity: medium (denial of service, every backend sharing the host kernel). The events of every
AIO context count against ``/proc/sys/fs/aio-max-nr`` (65 536 by default), one counter for the
whole machine (``/proc/sys/fs/aio-nr``): no namespace, cgroup or rlimit bounds it. The seccomp
policy (Docker's default profile likewise) allowed ``io_setup``.

Attack: the sandboxed function calls ``io_setup(4096, &ctx)`` through ``ctypes`` and keeps the
context (the worker lives on between calls). Repeated, it fills ``aio-max-nr``: then the host's
own ``io_setup`` (databases, qemu, libaio users) fails with ``EAGAIN``.

What the host saw (before the fix): ``io_setup`` returned 0 in BASIC, NAMESPACE and CONTAINER; the
host's ``aio-nr`` grew by 8 192 while the worker lived (the kernel reserves twice the events asked).

Expected: ``io_setup`` fails inside every backend that loads our filter or profile (EPERM), and
the host's ``aio-nr`` does not grow.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.confinement.seccomp import SeccompPolicy

from .test_outside5_common import FILTERED_BACKENDS, need

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.timeout(300)

EVENTS = 4096


def take_aio_context(events: int) -> tuple[int, int]:
    """SANDBOX side: ``io_setup(events, &ctx)`` and keep the context; ``(result, errno)``."""
    import ctypes
    import os

    nr = {"x86_64": 206, "aarch64": 0}[os.uname().machine]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ctx = ctypes.c_ulong(0)
    got = int(libc.syscall(ctypes.c_long(nr), ctypes.c_uint(events), ctypes.byref(ctx)))
    return got, ctypes.get_errno()


def _aio_nr() -> int:
    """HOST side: the machine's AIO events in use."""
    return int(Path("/proc/sys/fs/aio-nr").read_text())


@pytest.mark.parametrize("backend", [*FILTERED_BACKENDS, "vm"])
def test_io_setup_is_denied_and_the_host_quota_untouched(backend: str) -> None:
    need(backend)
    config = create_config_by_level("moderate", isolation_type=IsolationType(backend))
    with OSSandbox(config) as sandbox:
        before = _aio_nr()
        got, err = sandbox.execute(take_aio_context, EVENTS)
        during = _aio_nr()  # the worker still holds whatever it was given
    assert got < 0 and err in (errno.EPERM, errno.ENOSYS), f"io_setup inside {backend} returned {got} (errno {err})"
    assert during - before < EVENTS, f"the host's aio-nr grew by {during - before} while the {backend} worker lived"


def test_both_outputs_of_the_policy_deny_io_setup() -> None:
    """The BPF program's names and the OCI profile (container backends) both hold ``io_setup``."""
    policy = SeccompPolicy.make(deny_exec=False, notify=False)
    assert "io_setup" in policy.denied_names()
    names = {n for rule in policy.oci_profile()["syscalls"] if "args" not in rule for n in rule["names"]}
    assert "io_setup" in names
