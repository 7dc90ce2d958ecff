"""Outside review 25b: BASIC changes the mode, times and xattrs of host files it cannot see (Landlock has no such right).

Severity: critical as root (a STRICT sandbox makes any root-owned file setuid or world-writable:
``chmod 4755 /usr/bin/python3`` or ``chmod 666 /etc/passwd`` is root for every local user, ``chmod 000`` of
libc takes the machine down); high unprivileged (the user's ``~/.ssh/id_ed25519``, ``~/.netrc``, ``~/.aws``
become world-readable to the other users of the machine, or ``000``; so does the run's own signing key,
``--sign-key``/``$GLSANDBOX_AUDIT_KEY``: any local user can then sign forged evidence; ``chmod 000`` of the
audit log makes the next session's audit fail). BASIC is the backend of a root host
in a container (no namespaces) and of every ``fallback_to_basic``.

BASIC hides and protects the host's filesystem with Landlock, whose rights cover opening, reading,
writing, truncating, executing, making and removing entries; it has no right for changing an existing
file's attributes: ``chmod``/``fchmodat``, ``utimensat``, ``setxattr``/``removexattr``, nor for
``stat``/``readlink`` of any path. The kernel then checks ownership only, and BASIC's worker keeps the
host's uid (as root: uid 0, capabilities dropped -- ``chmod`` of an owned file needs none). The seccomp
policy allows all of them.

Attack: the sandboxed function is handed the path of a host file in a 0700 folder it is not shown
(``/root/...`` as root; a folder of the host user's otherwise) and calls ``chmod(path, 0o4777)``,
``utime(path, (0, 0))`` and ``setxattr(path, "user.r25b", b"x")``.

What the host saw (measured, STRICT): as root, the file in ``/root`` went from ``0600`` to ``04777``
(setuid, world-writable), its mtime to 1970, an xattr was set; the sandbox's own ``open`` of it failed
(EACCES: Landlock) and ``stat``/``readlink`` of the hidden paths worked; a hidden root-owned 0700 folder
went to 0777 the same way (``chmod 777 /root``: any local user plants ``~root/.bashrc``), while
``truncate``/``unlink``/``rename``/``mkdir``/``symlink``/``link`` there got EACCES (Landlock) and ``chown`` EPERM. Unprivileged (uid 65534): the same on
the user's file. The call's record says ``execution_success``, no violation.

Expected: the sandbox cannot change any attribute of a host file outside the folders it may write.

Fix direction: BASIC's seccomp filter denies ``chmod``/``fchmod``/``fchmodat``/``fchmodat2``,
``utime``/``utimes``/``utimensat``/``futimesat``, ``*setxattr``/``*removexattr`` (EPERM) -- the writable
folders lose little (``shutil.copy`` of modes fails softly) --, or lets them through the supervisor with
a path check against the writable folders; and as root the worker drops to an unprivileged uid (as
NAMESPACE does) so no root-owned file is its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from .test_outside13_common import nobody_tmp, run_as_nobody
from .test_outside25b_common import as_root, result_of

pytestmark = pytest.mark.timeout(240)

HOST = r"""
import json, os, sys
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level


def attack(path):
    # SANDBOX side: change a hidden host file's attributes.
    import os

    out = {}
    for name, act in (
        ("chmod", lambda: os.chmod(path, 0o4777)),
        ("utime", lambda: os.utime(path, (0, 0))),
        ("setxattr", lambda: os.setxattr(path, "user.r25b", b"x")),
        ("open", lambda: open(path).close()),
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
after = os.stat(path)
print("RESULT " + json.dumps({
    "said": said,
    "before": [oct(before.st_mode), before.st_mtime],
    "after": [oct(after.st_mode), after.st_mtime],
}))
"""


@pytest.mark.parametrize("host", ["root", "uid 65534"])
def test_basic_cannot_change_hidden_host_files(host: str) -> None:
    folder = tempfile.mkdtemp(prefix="r25b-private-", dir="/root" if host == "root" else None)
    try:
        victim = os.path.join(folder, "id_ed25519")
        with open(victim, "w") as fh:
            fh.write("-----BEGIN OPENSSH PRIVATE KEY----- (a test file)\n")
        os.chmod(victim, 0o600)
        os.chmod(folder, 0o700)
        if host == "root":
            got = result_of(as_root(HOST, victim))
        else:
            os.chown(folder, 65534, 65534)
            os.chown(victim, 65534, 65534)
            with nobody_tmp("glsandbox-r25b-") as tmp:
                got = result_of(run_as_nobody(HOST, victim, tmp=tmp))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert got["after"] == got["before"], (
        f"a STRICT BASIC sandbox (host as {host}) changed a host file in a folder it is not shown: "
        f"mode and mtime {got['before']} -> {got['after']}; its calls returned {got['said']}"
    )
