"""A Landlock domain that fences the container's worker off its ancestors (CHILD side).

Called by the container's bootstrap (:func:`glsandbox_kernel.worker.bootstrap._load_filter`)
before it loads the seccomp filter and before any untrusted code runs. The
container's pid 1 (docker-init under runc, Podman's catatonit) runs as the
same uid as the worker, dumpable, with no capabilities either way, so the
kernel let the worker open ``/proc/1/mem`` read-write: it could write code
into its init, which runs outside the bootstrap's filter and supervisor (the
OCI profile leaves the escape class to that filter) and with the daemon's
RLIMIT_NOFILE. Landlock lets a restricted process ptrace (``/proc/PID/mem``,
``environ``, ``fd``, ``process_vm_*``, ``pidfd_getfd``) only processes of its
own domain or one nested in it, so a domain here cuts the worker and all its
descendants off docker-init, and nothing else: the ruleset handles only
``MAKE_CHAR``/``MAKE_BLOCK``, which no capability-less container may do anyway.

Light on purpose (ctypes and :mod:`glsandbox_kernel.linux`): it runs at every container start.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from ..linux import libc, sysno

#: LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_BLOCK
_HANDLED = (1 << 6) | (1 << 11)


def fence_child(report: dict[str, Any]) -> None:
    """CHILD side: put this process (and what it starts) in a Landlock domain of its own.

    No Landlock (``ENOSYS``/``EOPNOTSUPP``: an old kernel, gVisor, which keeps
    ``/proc/1/mem`` to itself) is reported, not fatal; any other failure raises OSError.
    """
    lib = libc()
    attr = ctypes.c_uint64(_HANDLED)
    fd = int(lib.syscall(sysno("landlock_create_ruleset"), ctypes.byref(attr), ctypes.c_size_t(8), 0))
    if fd < 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EOPNOTSUPP):
            report["ancestor_fence"] = f"unavailable: landlock_create_ruleset: {os.strerror(err)}"
            return
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        if int(lib.syscall(sysno("landlock_restrict_self"), fd, 0)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(fd)
    report["ancestor_fence"] = "landlock"
