"""Outside review 26: a sandbox takes its owner's inotify instances from the host.

Severity: medium (denial of service for the host user). inotify instances count per user
(``fs.inotify.max_user_instances``, 128 by default), and a user namespace gives no quota of its
own: the kernel charges a sandbox's instances to the namespace owner's count in every parent
namespace too. Measured before the fix: a NAMESPACE sandbox of a host user made 128 instances and
that user's own ``inotify_init`` on the host failed with EMFILE until they were closed; a rootful
Docker container made 128 as uid 65534, and a host process of uid 65534 got EMFILE meanwhile.
(BASIC's watch of hidden folders: ``test_outside26_basic_inotify``.)

Expected: creating an inotify instance fails inside every backend that loads our filter or
profile (EPERM), so no sandbox holds any of its owner's instances.
"""

from __future__ import annotations

import errno
import sys

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.confinement.seccomp import SeccompPolicy

from .test_outside5_common import FILTERED_BACKENDS, need

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.timeout(300)


def take_inotify_instances(count: int) -> tuple[int, int]:
    """SANDBOX side: up to ``count`` inotify instances, kept open; ``(how many, last errno)``."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    held = []
    err = 0
    for _ in range(count):
        fd = libc.inotify_init1(0)
        if fd < 0:
            err = ctypes.get_errno()
            break
        held.append(fd)
    return len(held), err


@pytest.mark.parametrize("backend", FILTERED_BACKENDS)
def test_no_sandbox_holds_an_inotify_instance(backend: str) -> None:
    need(backend)
    config = create_config_by_level("moderate", isolation_type=IsolationType(backend))
    with OSSandbox(config) as sandbox:
        held, err = sandbox.execute(take_inotify_instances, 8)
    assert held == 0 and err in (errno.EPERM, errno.ENOSYS), f"{backend}: {held} inotify instance(s) (errno {err})"


def test_both_outputs_of_the_policy_deny_inotify_instances() -> None:
    """The BPF program's names and the OCI profile (container backends) both hold the inotify inits."""
    policy = SeccompPolicy.make(deny_exec=False, notify=False)
    names = {n for rule in policy.oci_profile()["syscalls"] if "args" not in rule for n in rule["names"]}
    assert "inotify_init1" in policy.denied_names() and "inotify_init1" in names
