"""The guest image's self-test mode: pytest under cgroup v2 inside the VM (GUEST side, PID 1).

Booted by ``scripts/test-cgroup2-vm`` with ``cgroup_no_v1=all
glsandbox.selftest=1`` on the kernel command line and a second read-only
drive (``/dev/vdb``, erofs) that holds the project's ``tests/``, its
``pyproject.toml`` and ``selftest.json`` (the pytest arguments and the
timeout scale). PID 1 here (instead of the agent of
:mod:`glsandbox_kernel.worker.guest`):

1. mounts tmpfs on ``/tmp`` and ``/run``, cgroup2 with ``nsdelegate`` on
   ``/sys/fs/cgroup`` and enables ``+memory +pids +cpu +io`` for the
   children of the root (each controller on its own, so a missing one is
   named), the tests drive on ``/opt/glsandbox``;
2. runs ``python3 -m pytest`` there as root in the guest, its output on the
   serial console (which the host runner streams);
3. prints ``glsandbox-selftest: exit N`` (pytest's status) and powers off.

Nothing here runs on the host; the host runner reads only that last line's
number (and shows the rest as text).
"""

from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

from .guest_system import _MS_NODEV, _MS_NOEXEC, _MS_NOSUID, mount, mount_basics, power_off

TESTS_DIR = "/opt/glsandbox"
CONTROLLERS = ("memory", "pids", "cpu", "io")
_MS_RDONLY = 1


def wanted() -> bool:
    """True when the kernel command line asks for the self-test (read by the guest's ``main``)."""
    try:
        with open("/proc/cmdline") as fh:
            return "glsandbox.selftest=1" in fh.read().split()
    except OSError:
        return False


def _say(text: str) -> None:
    os.write(1, f"glsandbox-selftest: {text}\n".encode())


def setup_cgroup2() -> None:
    """cgroup2 with nsdelegate at /sys/fs/cgroup, the four controllers enabled below the root."""
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        mount("cgroup2", "/sys/fs/cgroup", "cgroup2", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "nsdelegate")
    with open("/proc/self/mountinfo") as fh:
        line = next((entry for entry in fh if " /sys/fs/cgroup " in entry), "")
    _say(f"cgroup mount: {line.split(' - ', 1)[-1].strip()}")
    for name in CONTROLLERS:
        try:
            with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as fh:
                fh.write(f"+{name}")
        except OSError as exc:
            _say(f"cannot enable +{name}: {exc}")
    with open("/sys/fs/cgroup/cgroup.subtree_control") as fh:
        _say(f"subtree_control: {fh.read().strip()}")
    with open("/proc/cgroups") as fh:
        v1 = [row.split()[0] for row in fh if not row.startswith("#") and row.split()[1] != "0"]
    _say(f"cgroup v1 hierarchies in use: {v1 or 'none'}")


def run_pytest() -> int:
    """Fork pytest on the tests drive; reap everything (PID 1) until it ends; its status."""
    with open(os.path.join(TESTS_DIR, "selftest.json")) as fh:
        spec = json.load(fh)
    args = [str(a) for a in spec.get("args", [])]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": "/tmp/home",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "GLSANDBOX_TIMEOUT_SCALE": str(spec.get("timeout_scale", 1)),
        "GLSANDBOX_IN_VM_SELFTEST": "1",
    }
    os.makedirs("/tmp/home", exist_ok=True)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    _say(f"running {' '.join(argv[1:])}")
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(TESTS_DIR)
            os.setsid()
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    while True:
        done, status = os.waitpid(-1, 0)
        if done == pid:
            return os.waitstatus_to_exitcode(status)


def main() -> NoReturn:
    """PID 1 of a self-test boot: set up, run pytest, report its status, power off."""
    code = 70
    try:
        mount_basics()
        setup_cgroup2()
        os.makedirs(TESTS_DIR, exist_ok=True)
        mount("/dev/vdb", TESTS_DIR, "erofs", _MS_RDONLY | _MS_NODEV | _MS_NOSUID)
        code = run_pytest()
    except BaseException as exc:  # noqa: BLE001 - PID 1 must not return (kernel panic)
        _say(f"failed: {exc!r}")
    _say(f"exit {code}")
    power_off()
