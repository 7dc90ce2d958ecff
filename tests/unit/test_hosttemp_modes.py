"""hosttemp.remove as an unprivileged host: a private folder goes whatever modes a sandbox set in it,
and only this uid's real folders get their modes back (links never followed)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import NOBODY, ROOT, as_user

SCRIPT = r"""
import os, sys
from glsandbox_kernel import hosttemp
base, outside = sys.argv[1], sys.argv[2]
for kind in ("w", "nb", "run"):
    top = hosttemp.private_dir(kind)
    os.makedirs(f"{top}/a/b/c")
    for d in ("a/b/c", "a/b", "a"):
        with open(f"{top}/{d}/data", "wb") as fh:
            fh.write(b"x" * 4096)
    os.symlink(outside, f"{top}/a/b/link")  # a link to a locked folder of ours outside: left as it is
    os.chmod(f"{top}/a/b/c", 0)
    os.chmod(f"{top}/a/b", 0o500)  # listable, not writable
    os.chmod(f"{top}/a", 0)
    hosttemp.remove(top)
    print(kind, os.path.lexists(top))
"""


@pytest.fixture
def nobody_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="htm-", dir="/tmp"))
    os.chmod(base, 0o777)
    yield base
    subprocess.run(["chmod", "-R", "u+rwx", str(base)], check=False)
    subprocess.run(["rm", "-rf", str(base)], check=False)


def test_remove_restores_owner_access_and_leaves_links_alone(nobody_base: Path) -> None:
    outside = nobody_base / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    os.chown(outside, NOBODY, NOBODY)
    os.chmod(outside, 0)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(nobody_base), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        as_user([sys.executable, "-c", SCRIPT, str(nobody_base), str(outside)]),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["w", "False", "nb", "False", "run", "False"], proc.stdout + proc.stderr
    assert stat.S_IMODE(os.lstat(outside).st_mode) == 0, "a folder reached through a link got its mode changed"
    assert (outside / "keep").read_text() == "keep"
    assert [p.name for p in nobody_base.iterdir() if p.name.startswith("glsandbox-")] == []


def test_remove_leaves_a_folder_of_another_uid_inside(nobody_base: Path) -> None:
    """A folder another uid owns inside ours (root made it here) keeps its mode; the rest goes."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(nobody_base), "PYTHONPATH": str(ROOT)}
    make = "from glsandbox_kernel import hosttemp; print(hosttemp.private_dir('w'))"
    top = Path(
        subprocess.run(
            as_user([sys.executable, "-c", make]), env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    foreign = top / "foreign"
    foreign.mkdir(mode=0o500)
    (top / "mine").mkdir()
    os.chown(top / "mine", NOBODY, NOBODY)
    os.chmod(top / "mine", 0)
    rm = f"from glsandbox_kernel import hosttemp; hosttemp.remove({str(top)!r})"
    subprocess.run(as_user([sys.executable, "-c", rm]), env=env, capture_output=True, text=True, check=True)
    assert stat.S_IMODE(os.lstat(foreign).st_mode) == 0o500 and os.lstat(foreign).st_uid == 0
    assert not (top / "mine").exists()
