"""Host-side private folders: named by their creator, swept after it is killed (HOST side, real processes)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glsandbox_kernel import creator, hosttemp, procfs
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.confinement.namespaces import userns_available


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
    """A reused pid (another start time) is a dead creator; another pid namespace's names are never
    swept, whatever their pid."""
    parent = os.getppid()
    reused = short_tmp / f"glsandbox-w{_token(parent, start=(procfs.start_time(parent) or 0) + 1)}-r"
    foreign_ns = short_tmp / f"glsandbox-w{_token(_dead_pid(), ns=1)}-f"
    for path in (reused, foreign_ns):
        path.mkdir()
    assert hosttemp.sweep() == 1
    assert not reused.exists() and foreign_ns.is_dir()
    assert not creator.gone(*creator.token().split("."))


_SEES_ALL = bool(hosttemp._all_own_pids())
needs_all = pytest.mark.skipif(not _SEES_ALL, reason="not in the initial pid namespace with a /proc that hides nothing")


@needs_all
def test_old_pid_only_names_are_swept_when_no_process_has_that_pid(short_tmp: Path) -> None:
    """Old names (``glsandbox-<kind><pid>-``): a dead pid is swept, a live creator's folder kept."""
    dead = short_tmp / f"glsandbox-w{_dead_pid()}-d"
    scratch = short_tmp / f"glsandbox-q{_dead_pid()}-d"  # a scratch folder, unmounted (nothing mounted here)
    mine = short_tmp / f"glsandbox-net{os.getpid()}-m"
    parents = short_tmp / f"glsandbox-run{os.getppid()}-p"
    for path in (dead, scratch, mine, parents):
        path.mkdir()
    (dead / "sock").write_text("x")
    assert hosttemp.sweep() == 2
    assert not dead.exists() and not scratch.exists() and mine.is_dir() and parents.is_dir()


_OTHER_NS = """
import os, sys, time
with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
    fh.write(str(int(sys.argv[1]) - 1))
pid = os.fork()
if pid == 0:
    time.sleep(600)
    os._exit(0)
print(pid, flush=True)
os.waitpid(pid, 0)
"""


def _in_another_pid_namespace(own_pid: int) -> subprocess.Popen[str]:
    """A process of a new pid namespace whose own pid there is ``own_pid`` (its pid here is another)."""
    proc = subprocess.Popen(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--pid",
            "--kill-child",
            "--mount-proc",
            sys.executable,
            "-c",
            _OTHER_NS,
            str(own_pid),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == str(own_pid)
    return proc


@needs_all
@pytest.mark.skipif(
    shutil.which("unshare") is None or not userns_available()[0], reason="needs unshare and user namespaces"
)
def test_old_names_are_judged_by_the_own_pid_of_processes_in_every_namespace(short_tmp: Path) -> None:
    """A live host of another pid namespace whose own pid is the name's keeps its folder though no
    process here has that pid; once that namespace's processes are gone, the folder goes too."""
    own_pid = _dead_pid()
    proc = _in_another_pid_namespace(own_pid)
    try:
        kept = short_tmp / f"glsandbox-net{own_pid}-k"
        kept.mkdir()
        assert creator.old_gone(str(own_pid))  # no process has the pid here: a pid-only check would sweep
        assert hosttemp.sweep() == 0
        assert kept.is_dir()
    finally:
        proc.kill()  # and with it the namespace's init, so all of that namespace
        proc.wait()
    for _ in range(600):  # until the namespace's processes are reaped (a zombie counts as alive)
        if own_pid not in hosttemp._all_own_pids():
            break
        time.sleep(0.1)
    assert hosttemp.sweep() == 1
    assert not kept.exists()


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
