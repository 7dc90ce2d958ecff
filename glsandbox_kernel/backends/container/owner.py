"""Which host made a container, and whether that host is gone (HOST side).

Every container this package creates carries labels naming the host
process that made it (:func:`labels`): its pid, start time (clock ticks
since boot) and pid namespace, as before, and since review 9 the kernel's
boot (``/proc/sys/kernel/random/boot_id``), the machine (a digest of
``/etc/machine-id`` and the host name: the raw machine id is never written
to an engine other machines may read) and the user (``os.getuid()``).
The pid namespace alone names no machine: the init namespace's link is
``pid:[4026531836]`` on every Linux machine, so on an engine several
machines share (a remote ``DOCKER_HOST``), or with ``/proc`` mounted
``hidepid``, pid, start time and namespace cannot tell a dead creator from
another machine's or user's live one.

Two readers, one rule each, both here:

* :func:`stale` is the start-up sweep's (:func:`.lifetime.sweep_stale`)
  judgement of one listed container; it removes only what it can prove is
  ours and dead, and keeps everything it cannot judge;
* :func:`host_filter` is the host-death watcher's (:mod:`.watcher`) label
  filter: exactly the labels this host process writes, so at its EOF the
  helper lists only the containers this very process made.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping

from ... import creator, procfs

LABEL = "glsandbox"
LABEL_HOST_PID = "glsandbox.host_pid"
LABEL_HOST_START = "glsandbox.host_start"
LABEL_HOST_PIDNS = "glsandbox.host_pidns"
LABEL_HOST_BOOT = "glsandbox.host_boot"
LABEL_HOST_MACHINE = "glsandbox.host_machine"
LABEL_HOST_UID = "glsandbox.host_uid"

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
MACHINE_ID_PATHS = ("/etc/machine-id", "/var/lib/dbus/machine-id")
_PIDNS = re.compile(r"pid:\[([0-9]+)\]")


def _first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.readline().strip()
    except OSError:
        return ""


@functools.cache
def boot_id() -> str:
    """This kernel's boot id ("" when unreadable); every container on one kernel shares it."""
    return _first_line(BOOT_ID_PATH)


@functools.cache
def machine() -> str:
    """A digest naming this machine ("" without a machine id: then no other boot is ever judged ours).

    The machine id with the host name: hosts in containers started from one
    image share an ``/etc/machine-id`` but not (by default) a host name.
    """
    machine_id = next((m for m in map(_first_line, MACHINE_ID_PATHS) if m), "")
    if not machine_id:
        return ""
    seed = f"glsandbox.host_machine\0{machine_id}\0{os.uname().nodename}".encode()
    return hashlib.sha256(seed).hexdigest()[:32]


def start_ticks(pid: int) -> str:
    """Host ``pid``'s start time in clock ticks, as a label value ("" when unknown)."""
    start = procfs.start_time(pid)
    return "" if start is None else str(start)


def labels() -> dict[str, str]:
    """The labels naming this host process, for every container it creates (read anew: a forked child is another host)."""
    pid = os.getpid()
    return {
        LABEL: "1",
        LABEL_HOST_PID: str(pid),
        LABEL_HOST_START: start_ticks(pid),
        LABEL_HOST_PIDNS: procfs.ns_link("self", "pid") or "",
        LABEL_HOST_BOOT: boot_id(),
        LABEL_HOST_MACHINE: machine(),
        LABEL_HOST_UID: str(os.getuid()),
    }


def host_filter() -> list[str]:
    """The engine's label filter for the containers this host process made (``key=value`` each)."""
    return [f"{key}={value}" for key, value in labels().items()]


def stale(found: Mapping[str, str]) -> bool:
    """Whether a container labelled ``found`` is ours and its host is known to be gone.

    Never touched (False): another user's, one without a boot or machine
    label (made by an older version or another tool: it may be any
    machine's), another machine's, and one of this boot made in another pid
    namespace (its pid means nothing here). Of this machine but another
    boot: its host is gone. Of this boot and pid namespace, the host's pid
    and start time decide (:func:`glsandbox_kernel.creator.gone`): gone when
    no process has the pid or the one that has it started at another time;
    a zombie, an unreadable ``/proc`` entry or an unknown start time count
    as alive.
    """
    if found.get(LABEL_HOST_UID) != str(os.getuid()):
        return False
    boot, where = found.get(LABEL_HOST_BOOT), found.get(LABEL_HOST_MACHINE)
    if not boot or where is None:
        return False
    if boot != boot_id():
        return bool(where) and where == machine() and bool(boot_id())
    pid, start = _number(found.get(LABEL_HOST_PID)), _number(found.get(LABEL_HOST_START))
    ns = _PIDNS.fullmatch(found.get(LABEL_HOST_PIDNS) or "")
    if ns is None or pid <= 0:
        return False
    return creator.gone(str(pid), str(start), ns.group(1))


def _number(value: str | None) -> int:
    """A label's decimal number; 0 when absent or not one."""
    return int(value) if value and value.isascii() and value.isdigit() else 0
