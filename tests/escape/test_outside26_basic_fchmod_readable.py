"""Outside review 26: BASIC changes the mode, times and xattrs of any host file it may *read*, through the fd forms.

Severity: critical as root (BASIC keeps the host's uid 0): a STRICT sandbox opens any root-owned file it may
read -- everything under ``/usr`` (``/usr/bin/bash``, ``/usr/bin/python3``), every ``--ro`` folder, the
read-only project folder -- with ``O_RDONLY`` and calls ``fchmod(fd, 0o4777)``: the host file becomes setuid and
world-writable (``/usr/bin/bash`` 04777 is root for every local user), ``futimens`` backdates it, ``fsetxattr``
tags it. Unprivileged, the same on every file of the user's that the sandbox may read (the analyst's read-only
data: ``chmod 000`` or ``0666`` of ``activity.csv``).

Where: ``glsandbox_kernel/confinement/seccomp_args.py`` (module docstring and ``PATH_ATTRIBUTE_CALLS``): review
25b made the *path* forms no-ops and kept ``fchmod``/``fchown``/``fsetxattr``/``utimensat(fd, NULL)`` allowed
because "they need a file opened for real, which Landlock bounds". Landlock bounds *opening*, but opening for
reading is enough: the kernel checks only ownership for ``fchmod``/``futimens`` (and write permission bits,
not the fd's mode, for ``fsetxattr`` of ``user.*``), so every readable root-owned file is changeable.

How judged (host side, as root): a root-owned 0644 file made in ``/usr/share`` for the test (a folder STRICT
BASIC lets the worker read). After ``sandbox.execute(attack, path)`` the host's ``os.stat`` shows mode
``0o104777`` and mtime 0 (measured: before ``0o100644``); the calls returned success, the record has no
violation (``escape_attempts`` 0). NAMESPACE refuses the same calls (EROFS: read-only bind mount).
Also measured through the same kind of ``O_RDONLY`` descriptor of a readable root-owned file: ``ioctl(FS_IOC_SETFLAGS)``
(``chattr +d`` went through; ``lsattr`` on the host shows it), ``flock(LOCK_EX)`` and ``fcntl(F_SETLEASE, F_RDLCK)``
(host processes that lock it, or open it for writing, wait), and ``fsetxattr`` on an ``O_DIRECTORY`` fd of a
readable folder; ``fchmod`` of such a folder fd (``/usr/bin``) is the same hole as the file's.

Suggested fix: under ``own_pid_only`` treat ``fchmod``, ``fsetxattr``/``fremovexattr`` and ``utimensat`` with
``pathname == NULL`` (and ``futimesat``) like the path forms (no-op success or EPERM) -- or allow them only on
descriptors opened for writing (the supervisor can check ``/proc/<pid>/fdinfo`` flags); and, as root, drop the
BASIC worker to an unprivileged uid so no host file is its own.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from .test_outside25b_common import as_root, result_of

pytestmark = pytest.mark.timeout(240)

HOST = r"""
import json, os, sys
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level


def attack(path):
    # SANDBOX side: open a readable host file read-only, then change its attributes through the fd.
    import os

    out = {}
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return {"open": f"errno {exc.errno}"}
    for name, act in (
        ("fchmod", lambda: os.fchmod(fd, 0o4777)),
        ("futimens", lambda: os.utime(fd, (0, 0))),
        ("fsetxattr", lambda: os.setxattr(fd, "user.r26", b"x")),
    ):
        try:
            act()
            out[name] = "done"
        except OSError as exc:
            out[name] = f"errno {exc.errno}"
    return out


path = sys.argv[1]
before = os.stat(path)
with OSSandbox(create_config_by_level("strict", isolation_type=IsolationType.BASIC)) as sandbox:
    said = sandbox.execute(attack, path)
    escapes = sandbox.metrics.escape_attempts
after = os.stat(path)
print("RESULT " + json.dumps({
    "said": said,
    "escapes": escapes,
    "before": [oct(before.st_mode), before.st_mtime],
    "after": [oct(after.st_mode), after.st_mtime],
}))
"""


def test_basic_cannot_fchmod_a_readable_root_file() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    fd, victim = tempfile.mkstemp(prefix="glsandbox-r26-victim-", dir="/usr/share")
    try:
        os.write(fd, b"a root-owned system file (test)\n")
        os.close(fd)
        os.chmod(victim, 0o644)
        got = result_of(as_root(HOST, victim))
    finally:
        os.unlink(victim)
    assert got["said"].get("open") is None, f"the test file was not readable in STRICT BASIC: {got}"
    assert got["after"] == got["before"], (
        f"a STRICT BASIC sandbox changed a root-owned host file it may only read, through an O_RDONLY fd: "
        f"mode and mtime {got['before']} -> {got['after']}; its calls returned {got['said']}, "
        f"escape attempts recorded: {got['escapes']}"
    )
