"""The guest's own system calls and set-up (SANDBOX side: the guest agent, PID 1 of the VM).

Used by :mod:`.guest` (the agent) and :mod:`.guest_selftest` (the cgroup v2
self-test mode): the console log, mount(2), the first mounts, the worker's
guest cgroup, the virtio-serial ports, reseeding and powering off.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import time
from typing import Any, NoReturn

DATA_PORT = "glsandbox.data"
CTL_PORT = "glsandbox.ctl"
WORKER_UID = 65534
WORKER_HOME = "/tmp/work"

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_RNDADDENTROPY = 0x40085203
_REBOOT_MAGIC1, _REBOOT_MAGIC2 = 0xFEE1DEAD, 0x28121969
_REBOOT_POWER_OFF, _REBOOT_RESTART = 0x4321FEDC, 0x01234567

_libc = ctypes.CDLL(None, use_errno=True)


def _log(text: str) -> None:
    """A line on the serial console (the host keeps the last lines for crash reports)."""
    try:
        os.write(2, f"glsandbox-guest: {text}\n".encode())
    except OSError:
        pass


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    """mount(2); raises OSError naming the call."""
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount({fstype} on {target}): {os.strerror(err)}")


def mount_basics() -> None:
    """tmpfs on /tmp and /run; proc and sys if the initramfs did not move them."""
    if not os.path.exists("/proc/self"):
        mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    if not os.path.exists("/sys/class"):
        mount("sys", "/sys", "sysfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777")
    mount("tmpfs", "/run", "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "mode=755")
    os.makedirs(WORKER_HOME, mode=0o700, exist_ok=True)
    os.chown(WORKER_HOME, WORKER_UID, WORKER_UID)


WORKER_CGROUP = "/sys/fs/cgroup/worker"
#: Guest memory kept out of the worker's cgroup for the kernel and this agent.
GUEST_RESERVE = 24 * 1024 * 1024


def worker_cgroup(report: dict[str, Any]) -> str | None:
    """A guest cgroup v2 for the worker whose memory.max leaves the guest a reserve.

    Near the guest's RAM the kernel thrashes on page cache (the root image)
    for a long time before its global OOM killer acts; a memory cgroup's own
    OOM kill is prompt and takes the worker's whole tree (``memory.oom.group``).
    Returns the ``cgroup.procs`` path, or None (and why, in ``report``).
    """
    try:
        if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            mount("cgroup2", "/sys/fs/cgroup", "cgroup2", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "nsdelegate")
        with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as fh:
            fh.write("+memory +pids")
        os.makedirs(WORKER_CGROUP, exist_ok=True)
        avail = 0
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
        limit = max(32 * 1024 * 1024, avail - GUEST_RESERVE)
        for name, value in (("memory.max", str(limit)), ("memory.oom.group", "1")):
            with open(os.path.join(WORKER_CGROUP, name), "w") as fh:
                fh.write(value)
    except OSError as exc:
        report["guest_cgroup"] = f"none: {exc}"
        return None
    report["guest_cgroup"] = {"memory_max": limit}
    return os.path.join(WORKER_CGROUP, "cgroup.procs")


def find_ports(timeout: float = 10.0) -> dict[str, str]:
    """Map virtio-serial port names to their /dev nodes (no udev in the guest)."""
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while True:
        try:
            entries = os.listdir("/sys/class/virtio-ports")
        except FileNotFoundError:
            entries = []
        for entry in entries:
            try:
                with open(f"/sys/class/virtio-ports/{entry}/name") as fh:
                    name = fh.read().strip()
            except OSError:
                continue
            if os.path.exists(f"/dev/{entry}"):
                found[name] = f"/dev/{entry}"
        if (DATA_PORT in found and CTL_PORT in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def reseed(seed: bytes) -> None:
    """Credit ``seed`` (from the host) to the guest's random pool (RNDADDENTROPY)."""
    buf = struct.pack("ii", len(seed) * 8, len(seed)) + seed
    fd = os.open("/dev/urandom", os.O_WRONLY)
    try:
        fcntl.ioctl(fd, _RNDADDENTROPY, buf)
    finally:
        os.close(fd)


def power_off() -> NoReturn:
    """Leave the guest: power off (QEMU exits); reboot as a fallback (-no-reboot exits too)."""
    os.sync()
    _libc.reboot(_REBOOT_POWER_OFF)
    _libc.reboot(_REBOOT_RESTART)
    os._exit(1)
