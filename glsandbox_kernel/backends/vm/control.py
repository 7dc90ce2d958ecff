"""Host-side helpers around a running QEMU: its QMP monitor, the watchdog, guest records (HOST side).

:class:`QMP` is the pool's stop/cont channel; :data:`WATCHDOG` is one helper
process per host process that kills our QEMUs if the host dies, so a paused
guest is never left behind; :func:`guest_violation` rebuilds a violation
line of the guest agent's control port from an allowlist, and
:class:`GuestRecords` rate-limits those lines on the host.
"""

from __future__ import annotations

import atexit
import json
import select
import socket
import threading
import time
from typing import Any

from ...exceptions import SandboxCrashedError
from ...ratelimit import OVERFLOW, RecordLimiter
from ..host_watch import HostWatch


class QMP:
    """A minimal QMP client (HOST side): greeting, capabilities, one command at a time.

    QEMU's replies are bounded (64 KiB a line) and events are skipped.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self._ready = False
        self._lock = threading.Lock()

    def _line(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise SandboxCrashedError("QEMU's monitor did not answer in time")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SandboxCrashedError("QEMU's monitor closed")
            self._buf += chunk
            if len(self._buf) > 1 << 16 and b"\n" not in self._buf:
                raise SandboxCrashedError("QEMU's monitor sent an oversize line")
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line)
        return msg if isinstance(msg, dict) else {}

    def command(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """Run one QMP command; raises SandboxCrashedError on an error reply or no reply."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._ready:
                self._line(deadline)  # greeting
                self._ready = True
                self.command_unlocked("qmp_capabilities", deadline)
            return self.command_unlocked(name, deadline)

    def command_unlocked(self, name: str, deadline: float) -> dict[str, Any]:
        self.sock.sendall(json.dumps({"execute": name}).encode() + b"\n")
        while True:
            msg = self._line(deadline)
            if "return" in msg:
                return msg
            if "error" in msg:
                raise SandboxCrashedError(f"QMP {name}: {msg['error']}")


#: The watchdog's part after ``collect`` (a pidfd per QEMU, taken at its watch: no pid reuse).
WATCHDOG_CODE = r"""
import os, select, shutil, signal, time
held = collect("pid", lambda msg: (os.pidfd_open(msg["pid"]), msg), lambda entry: os.close(entry[0]))
for fd, msg in held.values():
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], 5.0)
    except OSError:
        pass
    rundir = msg.get("rundir") or ""
    if os.path.basename(rundir).startswith("glsandbox-vm-"):
        shutil.rmtree(rundir, ignore_errors=True)
    for cg in msg.get("cgroups") or []:
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
"""


class _Watchdog(HostWatch):
    """HOST side: one helper process that SIGKILLs our QEMUs if this process dies.

    A paused guest (the pool, or a KVM that hit an emulation failure) cannot
    power itself off when the host's sockets close, so something outside
    must kill it even after a SIGKILL of the host: a
    :class:`..host_watch.HostWatch` that holds a pidfd per QEMU and at EOF
    kills every QEMU still held, then removes its run directory and its
    (now empty) host cgroups.
    """

    def watch(self, pid: int, rundir: str, cgroup_dirs: list[str]) -> None:
        """Called right after QEMU started; its run directory and cgroups go with it."""
        self.register({"pid": pid, "rundir": rundir, "cgroups": cgroup_dirs})

    def forget(self, pid: int) -> None:
        """Called once QEMU is reaped and its run directory and cgroup removed."""
        self.unregister({"pid": pid})


WATCHDOG = _Watchdog("QEMU watchdog", WATCHDOG_CODE)
atexit.register(WATCHDOG.close)


_VIOLATION_STR = {"kind": 32, "syscall": 64, "action": 32, "detail": 512}


def guest_violation(raw: bytes) -> dict[str, Any] | None:
    """HOST side: the guest supervisor's record, rebuilt from an allowlist of typed fields.

    The guest is untrusted: every record is ``trusted: false`` with
    ``source: "guest"``, and its time is the host's (the guest's kept as ``guest_time``).
    """
    try:
        msg = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    out: dict[str, Any] = {}
    for key, cap in _VIOLATION_STR.items():
        value = msg.get(key)
        if isinstance(value, str):
            out[key] = value[:cap]
    if "kind" not in out:
        return None
    for key in ("pid", "repeats"):
        value = msg.get(key)
        if type(value) is int and 0 <= value < 1 << 31:
            out[key] = value
    for key in ("escape", "summary"):
        if type(msg.get(key)) is bool:
            out[key] = msg[key]
    if type(msg.get("time")) in (int, float):
        out["guest_time"] = float(msg["time"])
    args = msg.get("args")
    if isinstance(args, list):
        out["args"] = [a for a in args[:6] if type(a) is int and 0 <= a < 1 << 64]
    out.update(time=time.time(), trusted=False, source="guest")
    return out


class GuestRecords:
    """HOST side: the per-call rate limit of the guest's violation lines, as the host's own supervisor's.

    The guest's supervisor limits its records, but the guest is untrusted: a
    guest kernel or agent taken over could write violation lines as fast as
    the control port carries them (~4 KiB lines), each one a record in the
    session, an audit-log line and a banner. The host admits them through
    :class:`~glsandbox_kernel.ratelimit.RecordLimiter` (8 of one kind a call,
    then one a second; at most 64 kinds, the rest merged); what it holds back
    is counted (a guest record's own ``repeats`` too) and written as summaries
    when the call ends. Called on the VM's reader thread (:meth:`admit`) and by
    the session, through the worker (:meth:`summaries`).
    """

    def __init__(self) -> None:
        self._limiter = RecordLimiter(8, 1.0, max_kinds=64)

    def admit(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """``record`` to deliver now (``repeats`` adds what the host held back), or None (counted)."""
        key = (record.get("kind"), record.get("syscall"), record.get("detail"))
        extra = record.get("repeats", 0)
        weight = (0 if record.get("summary") else 1) + extra
        admitted = self._limiter.admit(key, weight=max(weight, 1))
        if admitted is None:
            return None
        kind, repeats = admitted
        if kind == OVERFLOW:
            record["detail"] = str(record.get("detail") or "")[:512] + " (one of many different guest records, merged)"
        if repeats:
            record["repeats"] = extra + repeats
        self._limiter.written(kind, record)
        return record

    def summaries(self, *, reset: bool) -> list[dict[str, Any]]:
        """What was held back since the last summary (host time); ``reset``: a new call starts."""
        return self._limiter.summaries(reset=reset)
