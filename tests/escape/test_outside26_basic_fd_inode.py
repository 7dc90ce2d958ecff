"""Outside review 26, the rest of the fd forms: what a STRICT BASIC sandbox does to a readable host inode.

Host side (as root): a root-owned file and folder made in ``/usr/share`` for the test (STRICT BASIC may read
there), an xattr set on the file by the host. The sandbox opens both ``O_RDONLY`` and tries ``fchown``,
``fremovexattr``, ``ioctl(FS_IOC_SETFLAGS)`` (``chattr +d``), ``fcntl(F_SETLEASE, F_RDLCK)``, and
``fchmod``/``fsetxattr`` through the folder's descriptor. Measured before the fix: all succeeded (the flag
showed in the host's ``lsattr``, the xattr was gone, the folder 0777). Expected: the host sees its file and
folder unchanged; the no-op calls say success, the ioctl and the lease EPERM. What must keep working there:
``flock`` (dask's locket) and POSIX locks (sqlite) on a file of its own in ``/tmp``, ``fchmod`` of it
silently a no-op.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from .test_outside25b_common import as_root, result_of

pytestmark = pytest.mark.timeout(240)

HOST = r"""
import json, os, sys
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level


def attack(path, folder):
    # SANDBOX side: change a readable host file's and folder's inode through O_RDONLY descriptors.
    import errno, fcntl, os, sqlite3, struct, tempfile

    def tries(out, name, act):
        try:
            act()
            out[name] = "done"
        except OSError as exc:
            out[name] = errno.errorcode.get(exc.errno, str(exc.errno))

    out = {}
    fd = os.open(path, os.O_RDONLY)
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    tries(out, "fchown", lambda: os.fchown(fd, 65534, 65534))
    tries(out, "fremovexattr", lambda: os.removexattr(fd, "user.host"))
    tries(out, "setflags", lambda: fcntl.ioctl(fd, 0x40086602, struct.pack("l", 0x40)))  # FS_IOC_SETFLAGS, +d
    tries(out, "lease", lambda: fcntl.fcntl(fd, 1024, fcntl.F_RDLCK))  # F_SETLEASE
    tries(out, "dir_fchmod", lambda: os.fchmod(dfd, 0o777))
    tries(out, "dir_fsetxattr", lambda: os.setxattr(dfd, "user.r26", b"x"))
    # what honest code does on a file of its own
    own = tempfile.mkdtemp()
    with open(os.path.join(own, "lock"), "w") as f:
        tries(out, "own_flock", lambda: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB))
        tries(out, "own_lockf", lambda: fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB))
        tries(out, "own_fchmod", lambda: os.fchmod(f.fileno(), 0o600))
    db = sqlite3.connect(os.path.join(own, "t.db"))
    db.execute("create table t (x)")
    db.executemany("insert into t values (?)", [(i,) for i in range(100)])
    db.commit()
    out["sqlite"] = db.execute("select sum(x) from t").fetchone()[0]
    return out


path, folder = sys.argv[1:3]
with OSSandbox(create_config_by_level("strict", isolation_type=IsolationType.BASIC)) as sandbox:
    said = sandbox.execute(attack, path, folder)
print("RESULT " + json.dumps({"said": said}))
"""


def _inode(path: str) -> dict[str, object]:
    st = os.stat(path)
    flags = subprocess.run(["lsattr", "-d", path], capture_output=True, text=True).stdout.split()[0]
    return {"mode": oct(st.st_mode), "owner": [st.st_uid, st.st_gid], "xattrs": os.listxattr(path), "flags": flags}


def test_basic_changes_no_readable_host_inode_through_its_descriptor() -> None:
    if os.geteuid() != 0 or shutil.which("lsattr") is None:
        pytest.skip("needs root and lsattr")
    folder = tempfile.mkdtemp(prefix="glsandbox-r26-dir-", dir="/usr/share")
    try:
        os.chmod(folder, 0o755)
        victim = os.path.join(folder, "victim")
        with open(victim, "w") as f:
            f.write("a root-owned system file (test)\n")
        os.chmod(victim, 0o644)
        os.setxattr(victim, "user.host", b"kept")
        before = {"file": _inode(victim), "folder": _inode(folder)}
        got = result_of(as_root(HOST, victim, folder))["said"]
        after = {"file": _inode(victim), "folder": _inode(folder)}
    finally:
        subprocess.run(["chattr", "-d", "-R", folder], capture_output=True)
        shutil.rmtree(folder)
    assert after == before, f"a STRICT BASIC sandbox changed a readable host inode through a descriptor: {got}"
    assert got["setflags"] == got["lease"] == "EPERM", got
    assert got["own_flock"] == got["own_lockf"] == got["own_fchmod"] == "done", got
    assert got["sqlite"] == 4950, got
