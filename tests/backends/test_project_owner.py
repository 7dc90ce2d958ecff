"""A project folder the sandbox user could not enter: mode 0700 (real sandboxes, as root).

``mktemp -d`` and pytest's ``tmp_path`` make root-owned 0700 folders; the
NAMESPACE sandbox runs as uid 65534 on the host (or as the folder's owner), so
a plain bind of such a folder cannot be entered. What must hold:

- a root-owned read-only project is shown through a read-only idmapped bind:
  the analyst reads the CSV next to the notebook, and nothing is writable;
- a folder of a non-root user is entered as that user (read-only or writable),
  and the files written there belong to that user on the host;
- a root-owned WRITABLE project (LENIENT) is never idmapped (setuid risk): the
  start fails with a message naming the folder, its mode and owner and the fix;
- BASIC runs as the host process's uid under Landlock: as root it reads the
  folder without any of this.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.basic import BasicBackend
from glsandbox_kernel.backends.namespace import NamespaceBackend
from glsandbox_kernel.exceptions import ConfinementError, SandboxConfigError

from ..conftest import glsandbox_cli

ROOT = os.geteuid() == 0
pytestmark = [
    pytest.mark.skipif(not ROOT, reason="the sandbox uid differs from the folder's owner only as root"),
    pytest.mark.skipif(not NamespaceBackend.available()[0], reason="needs Linux namespaces"),
]


@pytest.fixture
def folder() -> Iterator[Path]:
    """A ``mktemp -d`` folder (0700, root-owned) holding ``data.csv`` (0600)."""
    d = Path(tempfile.mkdtemp(prefix="glsandbox-owner-"))
    (d / "data.csv").write_text("a,b\n1,2\n")
    (d / "data.csv").chmod(0o600)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _chown_tree(d: Path, uid: int) -> None:
    for p in (d, *d.rglob("*")):
        os.chown(p, uid, uid)


def read_and_write(name: str) -> dict[str, object]:
    """SANDBOX side: cwd, the CSV next to it, our uid, and what writing ``name`` there gave."""
    out: dict[str, object] = {"cwd": os.getcwd(), "uid": os.getuid()}
    with open("data.csv") as f:
        out["csv"] = f.read()
    try:
        with open(name, "w") as f:
            f.write("written\n")
        out["write"] = "ok"
    except OSError as exc:
        out["write"] = exc.errno
    return out


def mount_of_cwd() -> dict[str, object]:
    """SANDBOX side: the owner of the cwd and its CSV as seen inside, and the cwd's mount options."""
    cwd = os.getcwd()
    opts = ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == cwd:
                opts = fields[5]  # the last mount on the cwd wins
    return {"uid": os.getuid(), "dir": os.stat(".").st_uid, "csv": os.stat("data.csv").st_uid, "opts": opts}


def _config(level: str, d: Path, isolation: IsolationType, **fs: object) -> object:
    return create_config_by_level(
        level, isolation_type=isolation, filesystem=FilesystemConfig(project_dir=str(d), **fs)
    )


def test_a_root_owned_0700_project_is_read_through_an_idmapped_bind(folder: Path) -> None:
    assert folder.stat().st_mode & 0o777 == 0o700 and folder.stat().st_uid == 0
    with OSSandbox(_config("moderate", folder, IsolationType.NAMESPACE, project_access="read")) as sb:
        seen = sb.execute(read_and_write, "new.txt")
        mount = sb.execute(mount_of_cwd)
    assert seen["cwd"] == str(folder)
    assert seen["csv"] == "a,b\n1,2\n"
    assert seen["write"] == errno.EROFS  # read-only: the idmapped bind is never writable
    assert not (folder / "new.txt").exists()
    # On-disk root appears as the sandbox user (never as root); the mount is ro, nosuid, nodev.
    assert mount["dir"] == mount["csv"] == mount["uid"] != 0, mount
    assert {"ro", "nosuid", "nodev", "idmapped"} <= set(str(mount["opts"]).split(",")), mount
    assert folder.stat().st_uid == 0 and (folder / "data.csv").stat().st_uid == 0  # the host's files unchanged


def test_basic_reads_a_root_owned_0700_project_as_the_host_uid(folder: Path) -> None:
    """BASIC has no user namespace: as root, the worker is host root held in by Landlock."""
    if not BasicBackend.available()[0]:
        pytest.skip(BasicBackend.available()[1])
    with OSSandbox(_config("moderate", folder, IsolationType.BASIC, project_access="read")) as sb:
        seen = sb.execute(read_and_write, "new.txt")
    assert seen["csv"] == "a,b\n1,2\n" and seen["cwd"] == str(folder)
    assert seen["write"] != "ok"  # Landlock: the project is read-only
    assert not (folder / "new.txt").exists()


@pytest.mark.parametrize("owner", [65534, 4321])
def test_a_users_0700_folder_is_entered_as_that_user(folder: Path, owner: int) -> None:
    _chown_tree(folder, owner)
    # Read-only and nothing writable (no output folder): the sandbox still runs as the owner.
    cfg = _config("moderate", folder, IsolationType.NAMESPACE, project_access="read", output_dir=None)
    with OSSandbox(cfg) as sb:
        seen = sb.execute(read_and_write, "new.txt")
    assert seen["csv"] == "a,b\n1,2\n"
    assert seen["write"] == errno.EROFS
    assert not (folder / "new.txt").exists()
    with OSSandbox(_config("lenient", folder, IsolationType.NAMESPACE)) as sb:
        seen = sb.execute(read_and_write, "new.txt")
    assert seen["csv"] == "a,b\n1,2\n" and seen["write"] == "ok"
    st = (folder / "new.txt").stat()
    assert (st.st_uid, st.st_gid) == (owner, owner)  # written as the folder's owner, never root


def test_a_root_owned_0700_writable_project_fails_with_the_fix(folder: Path) -> None:
    with pytest.raises(SandboxConfigError) as info:
        with OSSandbox(_config("lenient", folder, IsolationType.NAMESPACE)) as sb:
            sb.execute(read_and_write, "new.txt")
    text = str(info.value)
    assert str(folder) in text and "0700" in text and "owner uid 0" in text, text
    assert f"chmod o+rx {folder}" in text and "chown" in text, text
    assert not (folder / "new.txt").exists()


def test_chroot_reads_a_root_owned_0700_project(folder: Path, rootfs: str) -> None:
    """CHROOT runs as a real host uid (65534) in a mount namespace: the same idmapped bind."""
    from glsandbox_kernel.backends.chroot import ChrootBackend

    if not ChrootBackend.available()[0]:
        pytest.skip(ChrootBackend.available()[1])
    (Path(rootfs) / str(folder).lstrip("/")).mkdir(parents=True)  # a given root is never modified
    cfg = _config("moderate", folder, IsolationType.CHROOT, project_access="read", root=rootfs)
    with OSSandbox(cfg) as sb:
        seen = sb.execute(read_and_write, "new.txt")
    assert seen["csv"] == "a,b\n1,2\n" and seen["cwd"] == str(folder)
    assert seen["write"] != "ok"
    assert not (folder / "new.txt").exists()


def test_chroot_without_a_mount_point_for_the_project_fails_saying_so(rootfs: str) -> None:
    """Never a silent fallback to an empty cwd: the start fails naming the missing mount point
    (a folder outside /tmp, whose mount point could be made on the sandbox's scratch tmpfs)."""
    from glsandbox_kernel.backends.chroot import ChrootBackend

    if not ChrootBackend.available()[0]:
        pytest.skip(ChrootBackend.available()[1])
    folder = Path(tempfile.mkdtemp(prefix="glsandbox-owner-", dir="/var/tmp"))
    try:
        folder.chmod(0o755)
        cfg = _config("moderate", folder, IsolationType.CHROOT, project_access="read", root=rootfs)
        with pytest.raises(ConfinementError) as info:
            with OSSandbox(cfg) as sb:
                sb.execute(read_and_write, "new.txt")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert f"chdir({str(folder)!r}): No such file or directory" in str(info.value), info.value


def _notebook(d: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(open('data.csv').read())")]
    path = d / "n.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_glsandbox_run_reads_the_csv_next_to_the_notebook(folder: Path) -> None:
    """The lead's reproduction: ``d=$(mktemp -d)``, a notebook and its CSV there, ``glsandbox run``."""
    nb = _notebook(folder)
    out = folder / "out.ipynb"
    proc = glsandbox_cli("run", str(nb), "-o", str(out), "--isolation", "namespace")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    texts = [o.get("text", "") for c in nbformat.read(str(out), as_version=4).cells for o in c.get("outputs", [])]
    assert "a,b\n1,2\n" in "".join(texts), texts


def test_glsandbox_run_shows_why_a_writable_root_folder_cannot_be_entered(folder: Path) -> None:
    nb = _notebook(folder)
    proc = glsandbox_cli("run", str(nb), "-o", str(folder / "out.ipynb"), "--level", "lenient")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "cannot enter the project folder" in text and f"chmod o+rx {folder}" in text, text
