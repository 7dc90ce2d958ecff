"""The VM guest agent: PID 1 inside the microVM (SANDBOX side, root in the guest).

Started by the initramfs ``/init`` (``switch_root`` to the read-only erofs
root, then ``python3 -I -m glsandbox_kernel.worker.guest``). It

1. mounts tmpfs on ``/tmp`` and ``/run`` (the root image is read-only), and
   cgroup2 with a memory cgroup for the worker (:func:`worker_cgroup`);
2. opens the two virtio-serial ports the host named ``glsandbox.data`` and
   ``glsandbox.ctl`` (found through ``/sys/class/virtio-ports``);
3. waits for the host's ``plan {json}`` line (rlimits, no_new_privs and the
   seccomp section built by the host's confinement modules);
4. forks the unchanged worker (:func:`glsandbox_kernel.worker.loop.serve`),
   which applies the plan, drops to uid/gid 65534 and serves its frames
   directly on the data port (:class:`PortStream`; a relay through this
   process cost two more guest context switches per frame, slow under TCG).
   The host's :class:`~glsandbox_kernel.protocol.FrameChannel` validates
   everything;
5. obeys one-line commands on the control port: ``int`` (SIGINT to the
   worker), ``kill`` (SIGKILL every guest process but itself), ``seed HEX``
   (mix host bytes into the guest's random pool), ``time NS`` (the host's
   clock); both sent at boot and on resume from the pool, so a resumed guest
   neither reuses random state nor runs on a clock stopped while it waited;
   ``sync`` (answered ``synced`` once every earlier line was applied);
   ``hold`` and ``go`` (SIGSTOP and SIGCONT the worker: a pooled guest's
   worker is held before the pause and let go after the ``seed`` and
   ``time`` of its resume, so the host need not wait for an answer);
6. when the worker ends, reports ``exit <status> [oom]`` on the control port
   (untrusted: the host records it as such) and powers the guest off, so
   QEMU exits.

Nothing here is trusted by the host: the VM boundary is the isolation, the
worker's uid keeps user code away from this process and the control port.
"""

from __future__ import annotations

import errno
import io
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any, NoReturn, cast

from .guest_system import (
    CTL_PORT,
    DATA_PORT,
    WORKER_HOME,
    WORKER_UID,
    _log,
    find_ports,
    mount_basics,
    power_off,
    reseed,
    worker_cgroup,
)


def _confine_child(plan: dict[str, Any], report: dict[str, Any], to_agent: socket.socket) -> None:
    """Forked child, still root: the host's steps that make sense in a guest.

    The sections come as wire data and are rebuilt (schema-checked) by the
    same step modules as on the host: rlimits, the uid drop, no_new_privs,
    then the seccomp filter (execve denied at STRICT, escape-class syscalls
    sent to a listener). The listener fd goes to the agent over
    ``to_agent``, whose supervisor records what it denies (see :class:`Agent`).
    """
    from ..confinement import capabilities, rlimits, seccomp
    from ..confinement._common import ChildState, lower_file_limit
    from ..confinement.sections import from_wire

    state = ChildState(report=report)
    if plan.get("rlimits") is not None:
        rlimits.apply_rlimits_child(from_wire(rlimits.RlimitsSection, plan["rlimits"], "plan.rlimits"), state)
    os.setgroups([])
    os.setresgid(WORKER_UID, WORKER_UID, WORKER_UID)
    os.setresuid(WORKER_UID, WORKER_UID, WORKER_UID)
    if plan.get("no_new_privs") is not None:
        nnp = from_wire(capabilities.NoNewPrivsSection, plan["no_new_privs"], "plan.no_new_privs")
        capabilities.no_new_privs_child(nnp, state)
    if plan.get("seccomp") is not None:
        seccomp.install_child(from_wire(seccomp.SeccompPolicy, plan["seccomp"], "plan.seccomp"), state)
    if state.pass_fds:
        socket.send_fds(to_agent, [b"L"], state.pass_fds)
    for fd in state.pass_fds:
        os.close(fd)
    to_agent.close()
    lower_file_limit(state.file_limit)  # the rlimits step leaves it to after the listener is sent


def _worker_child(port: PortStream, plan: dict[str, Any], report: dict[str, Any], to_agent: socket.socket) -> NoReturn:
    """Forked child: confine, drop to the worker uid, then serve frames (becomes untrusted)."""
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(WORKER_HOME)
        os.environ.clear()
        os.environ.update(
            {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": WORKER_HOME,
                "TMPDIR": WORKER_HOME,
                "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                "IPYTHONDIR": os.path.join(WORKER_HOME, ".ipython"),
                "GLSANDBOX": "1",
            }
        )
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        from .loop import serve

        _confine_child(plan, report, to_agent)
        serve(cast(socket.socket, port), report=report)  # duck-typed: FrameChannel's three calls
    except BaseException as exc:  # noqa: BLE001 - the child must never return into the agent
        _log(f"worker failed to start: {exc!r}")
        os._exit(70)


def oom_kills() -> int:
    """The guest kernel's OOM-kill count (/proc/vmstat), 0 when unreadable."""
    try:
        with open("/proc/vmstat") as fh:
            for line in fh:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _guest_report() -> dict[str, Any]:
    """Facts the guest states about itself: recorded by the host as untrusted."""
    report: dict[str, Any] = {"guest_kernel": os.uname().release, "trusted": False}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    report["guest_mem_total"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return report


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[n:]


class PortStream:
    """WORKER side: the data port as the calls FrameChannel makes of a socket.

    ``fileno``/``sendall``/``recv_into`` (and ``recv``, ``close``): the
    unchanged worker loop runs on it directly; EOF when the host side closes.
    ``recv_into`` is a C method (a raw ``FileIO``'s ``readinto``, which retries
    on EINTR itself): no Python frame per received frame, each of whose
    bytecodes costs the emulated guest about 0.4 us.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._file = io.FileIO(fd, "r+", closefd=False)
        self.recv_into = self._file.readinto

    def fileno(self) -> int:
        return self.fd

    def sendall(self, data: bytes | memoryview) -> None:
        n = os.write(self.fd, data)
        if n < len(data):  # a frame past the port's 32 KiB per write: the rest
            _write_all(self.fd, memoryview(data)[n:])

    def recv(self, size: int) -> bytes:
        return os.read(self.fd, size)

    def close(self) -> None:
        os.close(self.fd)


class Agent:
    """The guest's PID 1 between the host's control port and the worker; one per guest."""

    def __init__(self, data_fd: int, ctl_fd: int) -> None:
        self.data_fd = data_fd
        self.ctl_fd = ctl_fd
        self.ctl_buf = b""
        self.ctl_lock = threading.Lock()
        self.worker_pid = 0
        self.plan: dict[str, Any] | None = None
        self.oom_base = 0
        #: the worker's end sends the seccomp listener fd here (``None`` once taken)
        self.from_worker: socket.socket | None = None
        self.supervisor: Any = None

    def say(self, line: bytes) -> None:
        """One line to the host's control port (main loop and supervisor thread share it)."""
        with self.ctl_lock:
            _write_all(self.ctl_fd, line + b"\n")

    def wait_for_plan(self, timeout: float = 120.0) -> dict[str, Any]:
        """Read control lines until the host's ``plan {json}`` (seeds are applied meanwhile)."""
        deadline = time.monotonic() + timeout
        while self.plan is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no plan from the host")
            ready, _, _ = select.select([self.ctl_fd], [], [], left)
            if ready:
                chunk = os.read(self.ctl_fd, 65536)
                if not chunk:
                    time.sleep(0.01)  # host side not connected yet
                self._feed(chunk)
        return self.plan

    def _feed(self, chunk: bytes) -> None:
        self.ctl_buf += chunk
        while b"\n" in self.ctl_buf:
            line, self.ctl_buf = self.ctl_buf.split(b"\n", 1)
            self.control(line)
        self.ctl_buf = self.ctl_buf[-(1 << 20) :]

    def start_worker(self) -> None:
        """Fork the worker on the data port itself (no relay hop: each hop costs under TCG)."""
        plan = self.wait_for_plan()
        report = _guest_report()
        procs = worker_cgroup(report)
        self.oom_base = oom_kills()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            os.close(self.ctl_fd)
            ours.close()
            if procs is not None:
                with open(procs, "w") as fh:  # still root: into the worker's cgroup first
                    fh.write(str(os.getpid()))
            _worker_child(PortStream(self.data_fd), plan, report, theirs)
        theirs.close()
        os.close(self.data_fd)  # the worker is the only holder of the data port
        self.worker_pid = pid
        self.from_worker = ours

    def take_listener(self) -> None:
        """The worker sent its seccomp listener fd (or closed its end): supervise it here.

        The supervisor is the host's own class (:mod:`glsandbox_kernel.supervisor`),
        run by this root agent, which the worker (uid 65534) cannot touch. Its
        records go to the host as ``violation {json}`` lines; the host marks them
        ``trusted: false`` (this agent is inside the guest).
        """
        sock, self.from_worker = self.from_worker, None
        if sock is None:
            return
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 4)
        except OSError:
            fds = []
        sock.close()
        if not fds:
            return
        for extra in fds[1:]:
            os.close(extra)
        from ..supervisor import Supervisor, SupervisorPolicy

        cfg = (self.plan or {}).get("supervisor") or {}
        allowed = cfg.get("allowed_executables") or []
        policy = SupervisorPolicy(
            deny_exec=cfg.get("deny_exec") is True,
            allowed_executables=tuple(str(a) for a in allowed if isinstance(a, str)),
        )
        self.supervisor = Supervisor(fds[0], on_violation=self.relay_violation, policy=policy)

    def relay_violation(self, record: dict[str, Any]) -> None:
        """Supervisor thread: one violation to the host (bounded line; the host validates it)."""
        line = json.dumps(record, separators=(",", ":"), default=str).encode()
        if len(line) > 3000:
            small = {k: record.get(k) for k in ("kind", "syscall", "pid", "time", "action", "escape", "repeats")}
            small["detail"] = str(record.get("detail", ""))[:512]
            line = json.dumps(small, separators=(",", ":"), default=str).encode()
        self.say(b"violation " + line)

    def control(self, line: bytes) -> None:
        """One command from the host's control port."""
        cmd, _, arg = line.strip().partition(b" ")
        if cmd == b"int" and self.worker_pid:
            try:
                os.kill(self.worker_pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        elif cmd == b"call":
            if self.supervisor is not None:
                self.supervisor.begin_call()  # per-call rate limit starts afresh
        elif cmd == b"kill":
            os.kill(-1, signal.SIGKILL)  # every process but PID 1
        elif cmd in (b"hold", b"go") and self.worker_pid:
            try:  # a pooled guest's worker: stopped before the pause, continued after seed and time
                os.kill(self.worker_pid, signal.SIGSTOP if cmd == b"hold" else signal.SIGCONT)
            except ProcessLookupError:
                pass
        elif cmd == b"seed":
            try:
                reseed(bytes.fromhex(arg.decode("ascii"))[:512])
            except (ValueError, OSError) as exc:
                _log(f"reseed failed: {exc}")
        elif cmd == b"plan" and self.plan is None:
            try:
                plan = json.loads(arg)
            except ValueError as exc:
                _log(f"bad plan: {exc}")
                plan = None
            self.plan = plan if isinstance(plan, dict) else {}
        elif cmd == b"time":
            try:
                time.clock_settime_ns(time.CLOCK_REALTIME, int(arg))
            except (ValueError, OSError) as exc:
                _log(f"clock_settime failed: {exc}")
        elif cmd == b"sync":
            self.say(b"synced")  # every line before it has been applied
        elif cmd == b"ping":
            self.say(b"pong")

    def run(self) -> NoReturn:
        """Obey the control port until the worker ends, then report and power off.

        SIGCHLD wakes the wait at once (a wakeup pipe), so a worker's exit
        turns into the guest's power-off without a polling delay, and the
        wait has no timeout: an idle guest's agent never wakes (each wake-up
        is emulated guest work under TCG).
        """
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        status = self._reap()
        while status is None:
            waits: list[Any] = [self.ctl_fd, wake_r]
            if self.from_worker is not None:
                waits.append(self.from_worker)
            try:
                ready, _, _ = select.select(waits, [], [])
                if wake_r in ready:
                    os.read(wake_r, 4096)
                if self.from_worker is not None and self.from_worker in ready:
                    self.take_listener()
                if self.ctl_fd in ready:
                    self._feed(os.read(self.ctl_fd, 65536))
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EINTR):
                    raise
            status = self._reap()
        if self.supervisor is not None:
            # What its rate limit still held, written now; no stop(): joining its thread
            # cost 0.3-0.8 s of every close under TCG, and the power-off ends it anyway.
            self.supervisor.end_call()
        oom = " oom" if oom_kills() > self.oom_base else ""
        self.say(f"exit {status}{oom}".encode())
        power_off()

    def _reap(self) -> int | None:
        """Collect dead processes (PID 1 adopts orphans); the worker's wait status or None."""
        result = None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return result
            if pid == 0:
                return result
            if pid == self.worker_pid:
                result = status


def image_stamp() -> str:
    """The guest-side source hash scripts/build-vm-image wrote next to this module."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest-src-hash")) as fh:
            return fh.read().strip()[:64] or "unknown"
    except OSError:
        return "unknown"


def main() -> NoReturn:
    """PID 1 entry point (``python3 -m glsandbox_kernel.worker.guest``)."""
    from . import guest_selftest

    if guest_selftest.wanted():
        guest_selftest.main()  # scripts/test-cgroup2-vm: pytest under cgroup v2, then power off
    try:
        mount_basics()
        ports = find_ports()
        if DATA_PORT not in ports or CTL_PORT not in ports:
            _log(f"virtio-serial ports missing (found {sorted(ports)})")
            power_off()
        data_fd = os.open(ports[DATA_PORT], os.O_RDWR | os.O_CLOEXEC)
        ctl_fd = os.open(ports[CTL_PORT], os.O_RDWR | os.O_CLOEXEC)
        # First words to the host: which sources this guest was built from (a stale
        # image is refused at once, not after a hello timeout).
        _write_all(ctl_fd, f"agent {image_stamp()}\n".encode())
        # Pre-import what every worker needs, once, before the fork.
        import cloudpickle  # noqa: F401

        from .. import supervisor  # noqa: F401 - imported here, the agent's take_listener costs nothing
        from ..confinement import capabilities, rlimits, seccomp, sections  # noqa: F401
        from . import loop  # noqa: F401

        agent = Agent(data_fd, ctl_fd)
        agent.start_worker()
        agent.run()
    except BaseException as exc:  # noqa: BLE001 - PID 1 must not return (kernel panic)
        _log(f"agent failed: {exc!r}")
        power_off()


if __name__ == "__main__" and os.getpid() == 1:
    main()
elif __name__ == "__main__":
    sys.exit("glsandbox_kernel.worker.guest runs only as PID 1 inside the VM guest")
