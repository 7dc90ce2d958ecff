"""The seccomp supervisor: HOST side, trusted.

Who calls: a backend creates one :class:`Supervisor` per worker with the
seccomp listener fd the worker sent in its first frame. A daemon thread
waits on the fd; the kernel parks each escape-class syscall of any process
in the sandbox until the supervisor answers. The supervisor decodes the
syscall, records a violation (``trusted: True``) through ``on_violation``
*before* answering, so the record exists by the time the sandboxed call can
see the result, and answers EPERM, or lets an allowed execve continue.

Only escape-class syscalls (and, where asked, execve) reach it; everything
else is decided by the BPF filter in the kernel, so the supervisor is never
on the hot path.

Floods are bounded by a rate limit, never by dropping a call's violations:
the session calls :meth:`Supervisor.begin_call` when a call starts, and the
first violation of each kind (syscall and detail) in every call is always
recorded, up to ``SupervisorPolicy.max_kinds`` kinds (further kinds, such as
one syscall with its arguments varied, are merged into one). Within a call,
each kind gets ``SupervisorPolicy.burst`` records, then at most one per
``interval`` seconds; each record after a pause carries ``repeats``, the
number of the same violations suppressed since the record before it, and
what is still pending is written as a summary record when
the next call starts or the supervisor stops. Every suppressed syscall is
still denied.

Limitation, as in the kernel's documentation: letting an execve CONTINUE
after reading its path from the target's memory is racy (another thread may
change the path), so exec inspection is a detector; the enforcement is the
filter itself (ptrace, mount, ... are denied whatever program runs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from .confinement import seccomp as _seccomp
from .linux import CLONE_FLAG_NAMES, FAMILY_NAMES, IOCTL_NAMES
from .ratelimit import RecordLimiter

log = logging.getLogger(__name__)

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1

_NOTIF = struct.Struct("=QIIiIQ6Q")
_PATH_MAX = 4096

#: Records the supervisor itself keeps (the latest), over the whole session.
KEPT = 256

_CLONE_FLAGS = CLONE_FLAG_NAMES
_IOCTLS = IOCTL_NAMES
_FAMILIES = FAMILY_NAMES


@dataclasses.dataclass(frozen=True, kw_only=True)
class SupervisorPolicy:
    """What the supervisor allows.

    ``deny_exec``: every execve is a violation (STRICT), except the paths or
    basenames in ``allowed_executables``. Otherwise only the basenames in
    ``escape_tools`` are denied (and recorded as escape attempts).
    """

    deny_exec: bool = False
    allowed_executables: tuple[str, ...] = ()
    escape_tools: frozenset[str] = _seccomp.ESCAPE_TOOLS
    #: Records of one kind of violation per call before the rate limit applies.
    burst: int = 8
    #: Then at most one record of that kind per ``interval`` seconds (with ``repeats``).
    interval: float = 1.0
    #: Distinct kinds recorded per call; further ones (a syscall's arguments varied in a loop)
    #: share one merged kind, rate-limited the same way, so a call's records stay bounded.
    max_kinds: int = 64


@dataclasses.dataclass
class Notification:
    """One decoded ``struct seccomp_notif``."""

    id: int
    pid: int
    nr: int
    arch: int
    args: tuple[int, ...]

    @property
    def syscall(self) -> str:
        return _seccomp.syscall_name(self.nr, self.arch)


def violation_count(record: dict[str, Any]) -> int:
    """How many violations one record stands for: itself (unless a summary) plus its ``repeats``.

    Used by the session and the audit totals, so a flood's suppressed repeats are counted.
    """
    repeats = record.get("repeats")
    extra = repeats if type(repeats) is int and repeats > 0 else 0
    return (0 if record.get("summary") else 1) + extra


class Supervisor:
    """Answers the sandbox's seccomp user notifications on a daemon thread (HOST side).

    ``on_violation`` receives one dict per violation::

        {kind: "syscall"|"exec"|"network", detail, syscall, pid, time,
         trusted: True, action: "denied", escape: bool, args: [...]}

    It is called on the supervisor thread, before the syscall is answered;
    it must be quick and must not call back into the sandbox.
    """

    def __init__(
        self,
        listener_fd: int,
        *,
        on_violation: Callable[[dict[str, Any]], None],
        policy: SupervisorPolicy | None = None,
        start: bool = True,
    ) -> None:
        self.listener_fd = listener_fd
        self.on_violation = on_violation
        self.policy = policy or SupervisorPolicy()
        self.violations: list[dict[str, Any]] = []
        self.stats = {"notifications": 0, "denied": 0, "continued": 0, "suppressed": 0, "errors": 0}
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._limiter = RecordLimiter(self.policy.burst, self.policy.interval, max_kinds=self.policy.max_kinds)
        self._thread = threading.Thread(target=self._run, name=f"seccomp-supervisor-{listener_fd}", daemon=True)
        if start:
            self._thread.start()

    def begin_call(self) -> None:
        """HOST side, called by the session (through the worker) when a call starts.

        Writes what the rate limit still holds of the previous call as summary
        records, then starts afresh: the first violation of every kind in the
        new call is recorded.
        """
        self._flush(reset=True)

    def end_call(self) -> None:
        """HOST side, called by the session when a call has ended, while it is still the running
        call: what the rate limit suppressed in it is written now, as summary records of that call."""
        self._flush(reset=False)

    def _flush(self, *, reset: bool) -> None:
        for summary in self._limiter.summaries(reset=reset):
            self._deliver(summary)

    def start(self) -> None:
        """Start the thread (when constructed with ``start=False``)."""
        if not self._thread.is_alive():
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and close the listener fd. Idempotent.

        Syscalls still waiting get ENOSYS from the kernel once the fd is closed.
        """
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._flush(reset=True)
        for fd in (self._wake_r, self._wake_w, self.listener_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the thread -------------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.listener_fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stopping:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            except OSError:
                return
            for fd, ev in events:
                if fd == self._wake_r:
                    return
                if ev & select.POLLIN:
                    try:
                        self._handle_one()
                    except Exception:  # never let the thread die with a syscall parked
                        self.stats["errors"] += 1
                        log.exception("seccomp supervisor: handling a notification failed")
                elif ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    return  # every process of the sandbox is gone

    def _recv(self) -> Notification | None:
        buf = bytearray(_NOTIF.size)
        try:
            fcntl.ioctl(self.listener_fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINTR, errno.EAGAIN):
                return None  # the target died or was interrupted meanwhile
            raise
        nid, pid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(buf)
        return Notification(nid, pid, nr, arch, tuple(args))

    def _id_valid(self, nid: int) -> bool:
        try:
            fcntl.ioctl(self.listener_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, struct.pack("=Q", nid))
        except OSError:
            return False
        return True

    def _send(self, nid: int, *, error: int = 0, flags: int = 0) -> None:
        resp = bytearray(_seccomp.pack_notif_resp(nid, error=error, flags=flags))
        try:
            fcntl.ioctl(self.listener_fd, SECCOMP_IOCTL_NOTIF_SEND, resp, True)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def _handle_one(self) -> None:
        n = self._recv()
        if n is None:
            return
        self.stats["notifications"] += 1
        name = n.syscall
        if name in ("execve", "execveat"):
            self._handle_exec(n, name)
            return
        kind, detail, escape = "syscall", self._describe(n, name), True
        if name == "socket":
            kind, escape = "network", False
        self._record(n, kind=kind, syscall=name, detail=detail, escape=escape, key=detail)
        self.stats["denied"] += 1
        self._send(n.id, error=-errno.EPERM)

    def _handle_exec(self, n: Notification, name: str) -> None:
        addr = n.args[0] if name == "execve" else n.args[1]
        path = self._read_string(n.pid, addr)
        argv = self._read_argv(n.pid, n.args[1] if name == "execve" else n.args[2])
        valid = self._id_valid(n.id)  # the pid still is the task that asked
        if not valid:
            return
        base = os.path.basename(path) if path else ""
        allowed = self.policy.allowed_executables
        escape = base in self.policy.escape_tools
        if self.policy.deny_exec:
            if path and (path in allowed or base in allowed) and not escape:
                self.stats["continued"] += 1
                self._send(n.id, flags=SECCOMP_USER_NOTIF_FLAG_CONTINUE)
                return
        elif not escape:
            self.stats["continued"] += 1
            self._send(n.id, flags=SECCOMP_USER_NOTIF_FLAG_CONTINUE)
            return
        shown = path if path is not None else "<unreadable>"
        detail = f"{name}({shown!r}" + (f", argv={argv!r}" if argv else "") + ")"
        self._record(
            n, kind="exec", syscall=name, detail=detail, escape=escape, key=base or shown, path=shown, argv=argv
        )
        self.stats["denied"] += 1
        self._send(n.id, error=-errno.EPERM)

    def _record(
        self, n: Notification, *, kind: str, syscall: str, detail: str, escape: bool, key: str, **extra: Any
    ) -> None:
        admitted = self._limiter.admit((syscall, key))
        if admitted is None:
            self.stats["suppressed"] += 1
            return
        kind_key, repeats = admitted
        if kind_key != (syscall, key):
            detail += " (one of many different violations in this call, merged)"
        now = time.time()
        record: dict[str, Any] = {
            "kind": kind,
            "detail": detail,
            "syscall": syscall,
            "pid": n.pid,
            "time": now,
            "trusted": True,
            "action": "denied",
            "escape": escape,
            "args": [hex(a) for a in n.args],
            "source": "seccomp-supervisor",
        }
        record.update(extra)
        if repeats:
            record["repeats"] = repeats
        self._limiter.written(kind_key, record)
        self._deliver(record)

    def _deliver(self, record: dict[str, Any]) -> None:
        self.violations.append(record)
        if len(self.violations) > KEPT:  # the session and the audit log have them all
            del self.violations[: len(self.violations) - KEPT]
        try:
            self.on_violation(record)
        except Exception:
            log.exception("seccomp supervisor: on_violation callback failed")

    @staticmethod
    def _describe(n: Notification, name: str) -> str:
        a = n.args
        if name == "clone":
            flags = [v for k, v in _CLONE_FLAGS.items() if a[0] & k]
            return f"clone({'|'.join(flags) or hex(a[0])})"
        if name == "ioctl":
            req = a[1] & 0xFFFFFFFF
            return f"ioctl({a[0] & 0xFFFFFFFF}, {_IOCTLS.get(req, hex(req))})"
        if name == "socket":
            fam = a[0] & 0xFFFFFFFF
            return f"socket({_FAMILIES.get(fam, str(fam))})"
        if name == "ptrace":
            return f"ptrace({a[0] & 0xFFFFFFFF}, pid={a[1] & 0xFFFFFFFF})"
        if name in ("unshare", "setns"):
            flags = [v for k, v in _CLONE_FLAGS.items() if a[0 if name == "unshare" else 1] & k]
            return f"{name}({'|'.join(flags) or hex(a[0])})"
        return f"{name}({', '.join(hex(x) for x in a[:3])})"

    # -- reading the target's memory ---------------------------------------

    @staticmethod
    def _read_mem(pid: int, addr: int, size: int, *, cstring: bool) -> bytes | None:
        """Read ``size`` bytes at ``addr`` of ``pid`` page by page (stop at NUL for strings)."""
        try:
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        out = b""
        try:
            while len(out) < size:
                page_left = 4096 - ((addr + len(out)) % 4096)
                chunk = os.pread(fd, min(page_left, size - len(out)), addr + len(out))
                if not chunk:
                    break
                out += chunk
                if cstring and b"\0" in chunk:
                    break
        except OSError:
            pass
        finally:
            os.close(fd)
        return out or None

    def _read_string(self, pid: int, addr: int) -> str | None:
        if not addr:
            return None
        raw = self._read_mem(pid, addr, _PATH_MAX, cstring=True)
        if raw is None:
            return None
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def _read_argv(self, pid: int, addr: int, limit: int = 8) -> list[str]:
        if not addr:
            return []
        raw = self._read_mem(pid, addr, 8 * limit, cstring=False)
        if not raw:
            return []
        out = []
        for i in range(len(raw) // 8):
            (ptr,) = struct.unpack_from("=Q", raw, 8 * i)
            if not ptr:
                break
            s = self._read_string(pid, ptr)
            out.append((s or "")[:256])
        return out
