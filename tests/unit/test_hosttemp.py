"""Host-side private folders: named by their creator, swept after it is killed (HOST side, real processes)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from glsandbox_kernel import creator, hosttemp, procfs
from glsandbox_kernel.backends.registry import backends


@pytest.fixture
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private $TMPDIR short enough for Unix socket paths, used by this process and its children."""
    base = Path(tempfile.mkdtemp(prefix="ht-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(base))
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _token(pid: int, start: int | None = None, ns: int | None = None) -> str:
    """A creator token as :func:`creator.token` writes it (by default: ``pid``'s own, in our namespace)."""
    start = (procfs.start_time(pid) or 1) if start is None else start
    return f"{pid}.{start}.{os.stat('/proc/self/ns/pid').st_ino if ns is None else ns}"


def test_sweep_removes_folders_of_dead_creators_only(short_tmp: Path) -> None:
    dead = _dead_pid()
    gone = short_tmp / f"glsandbox-w{_token(dead)}-abc"
    gone.mkdir()
    (gone / "f").write_text("x")
    (gone / "link").symlink_to("/etc")  # removed as a link, /etc untouched
    alive = short_tmp / f"glsandbox-net{_token(os.getppid())}-abc"
    alive.mkdir()
    planted = short_tmp / f"glsandbox-run{_token(dead)}-planted"
    target = short_tmp / "target"
    target.mkdir()
    (target / "keep").write_text("keep")
    planted.symlink_to(target)
    other = short_tmp / "unrelated-dir"
    other.mkdir()
    assert hosttemp.sweep() == 1
    assert not gone.exists() and alive.is_dir() and other.is_dir() and os.path.isdir("/etc")
    assert planted.is_symlink() and (target / "keep").read_text() == "keep"


def test_sweep_judges_the_creator_by_pid_start_time_and_pid_namespace(short_tmp: Path) -> None:
    """A reused pid (another start time) is a dead creator; another pid namespace's names, and the
    pid-only names of older versions (namespace unknown), are never swept, whatever their pid."""
    parent = os.getppid()
    reused = short_tmp / f"glsandbox-w{_token(parent, start=(procfs.start_time(parent) or 0) + 1)}-r"
    foreign_ns = short_tmp / f"glsandbox-w{_token(_dead_pid(), ns=1)}-f"
    old_format = short_tmp / f"glsandbox-w{_dead_pid()}-o"
    for path in (reused, foreign_ns, old_format):
        path.mkdir()
    assert hosttemp.sweep() == 1
    assert not reused.exists() and foreign_ns.is_dir() and old_format.is_dir()
    assert not creator.gone(*creator.token().split("."))


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder of another uid needs root")
def test_sweep_leaves_another_users_folder(short_tmp: Path) -> None:
    foreign = short_tmp / f"glsandbox-w{_token(_dead_pid())}-foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    hosttemp.sweep()
    assert foreign.is_dir()


def test_private_dir_is_named_by_its_creator_and_private(short_tmp: Path) -> None:
    path = hosttemp.private_dir("net")
    assert os.path.basename(path).startswith(f"glsandbox-net{creator.token()}-")
    assert os.stat(path).st_mode & 0o777 == 0o700
    hosttemp.remove(path)
    assert not os.path.exists(path)
    with pytest.raises(ValueError):
        hosttemp.private_dir("../x")


_HOST = """
import dataclasses, sys, time
from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
basic = OSSandbox(create_config_by_level("moderate", isolation_type=IsolationType.BASIC))
cfg = create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE)
ns = OSSandbox(cfg.replace(network=dataclasses.replace(cfg.network, allow_network=True, allowed_hosts=("127.0.0.1:9",))))
for sb in (basic, ns):
    sb.__enter__()
    sb.execute(abs, -1)
print("ready", flush=True)
time.sleep(60)
"""
_CAN = all(backends()[name].available()[0] for name in ("basic", "namespace"))


@pytest.mark.skipif(not _CAN, reason="needs the basic and namespace backends")
def test_a_killed_hosts_folders_are_swept_by_the_next_host(short_tmp: Path) -> None:
    """SIGKILL of a host (BASIC work folder, NAMESPACE proxy folder) leaves folders; the next host sweeps them."""
    proc = subprocess.Popen([sys.executable, "-c", _HOST], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        left = sorted(p.name for p in short_tmp.iterdir() if p.name.startswith("glsandbox-"))
        kinds = {name[len("glsandbox-") :].split(str(proc.pid))[0] for name in left}
        assert {"net"} <= kinds and kinds & {"w", "q"}, left
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert all((short_tmp / name).exists() for name in left)
    nxt = subprocess.run(
        [
            sys.executable,
            "-c",
            _HOST.replace('print("ready", flush=True)\ntime.sleep(60)', "basic.close(); ns.close()"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nxt.returncode == 0, nxt.stderr
    assert not any((short_tmp / name).exists() for name in left), sorted(os.listdir(short_tmp))


@pytest.mark.skipif(os.geteuid() != 0, reason="planting a folder of another uid needs root")
def test_a_planted_seccomp_profile_for_podman_is_not_used(short_tmp: Path) -> None:
    """Another user pre-creating Podman's per-uid profile folder with a permissive profile under the
    expected name (the profile is public, so is its digest) must not hand that profile to a container."""
    import hashlib

    from glsandbox_kernel.backends.container import docker_api

    profile = b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}'
    name = hashlib.sha256(profile).hexdigest()[:32] + ".json"
    folder = short_tmp / f"glsandbox-seccomp-{os.geteuid()}"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    (folder / name).write_bytes(b'{"defaultAction": "SCMP_ACT_ALLOW"}')
    os.chown(folder, 65534, 65534)
    path = docker_api._profile_file(profile)
    assert not path.startswith(str(folder)) and Path(path).read_bytes() == profile
    # In its own folder a stale or planted file under the name is rewritten, a good one reused.
    os.chown(folder, 0, 0)
    os.chmod(folder, 0o700)
    path = docker_api._profile_file(profile)
    assert path == str(folder / name) and Path(path).read_bytes() == profile
    assert docker_api._profile_file(profile) == path
