"""One QEMU microVM per worker: command line, launch, host view (HOST side).

:func:`launch` listens on four Unix sockets in a private directory
*before* QEMU starts (data: the worker's frames; ctl: one-line commands to
the guest agent; console: the guest's serial console, kept as a bounded
tail for crash reports; qmp: QEMU's monitor, for the pool's stop/cont), starts QEMU with them as chardevs, moves QEMU into
a host cgroup when cgroups work here, accepts the connections and returns
a :class:`VMWorker`. Nothing the guest sends is trusted: frames go through
the session's :class:`~glsandbox_kernel.protocol.FrameChannel`; control
lines and console bytes are capped and only recorded.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from ... import procfs
from ...config import ResourceLimits
from ...exceptions import BackendUnavailableError, SandboxCrashedError
from ..base import ExitInfo, ResourceSample, WorkerProcess
from ..violations import ViolationRelay
from .accel import Accel
from .control import QMP, WATCHDOG, GuestRecords, guest_violation
from .image import find_image
from .qemu import QEMU as QEMU
from .qemu import qemu_command

MiB = 1024 * 1024
#: What QEMU itself needs beyond guest RAM (TCG translation cache, device state).
QEMU_OVERHEAD = 192 * MiB
_CONSOLE_TAIL = 16 * 1024
_CTL_CAP = 4096
_SOCKETS = ("console", "data", "ctl", "qmp")


class VMWorker(ViolationRelay, WorkerProcess):
    """A worker inside a QEMU microVM; ``pid`` is QEMU's host pid. Made by :func:`launch`.

    Violations are the guest agent's supervisor records, relayed on the
    control port and delivered (``trusted: false``) through :class:`ViolationRelay`.
    """

    def __init__(
        self,
        *,
        proc: subprocess.Popen[bytes],
        sock: socket.socket,
        ctl: socket.socket,
        console: socket.socket,
        qmp: QMP,
        rundir: str,
        cgroup: Any,
        facts: dict[str, Any],
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.sock = sock
        self.ctl = ctl
        self.console = console
        self.qmp = qmp
        self.rundir = rundir
        self.cgroup = cgroup
        self.facts = facts
        self.console_tail: collections.deque[bytes] = collections.deque()
        self._console_size = 0
        self.guest_exit: str | None = None
        self._synced = threading.Event()
        #: the source stamp the guest agent stated at boot (untrusted), and when it came
        self.agent_stamp: str | None = None
        self._agent = threading.Event()
        self._guest_violations = 0
        self._guest_records = GuestRecords()  # the host's own rate limit of the guest's lines
        #: whether the guest supervisor reported anything (its held summaries come at the worker's exit)
        self.reported_violations = False
        self.init_violations()
        self._ctl_buf = b""
        self._cleaned = False
        self._refill: Callable[[], None] | None = None
        self._refill_timer: threading.Timer | None = None
        self._proc_reader = procfs.ProcessReader(proc.pid)
        self._reader = threading.Thread(target=self._read_side_channels, name=f"glsandbox-vm-{self.pid}", daemon=True)
        self._reader.start()

    # -- side channels (console, control replies): bounded, untrusted -------------
    def _read_side_channels(self) -> None:
        """Reader thread: keep the console's last 16 KiB and the agent's control lines."""
        socks = [self.console, self.ctl]
        while socks:
            try:
                ready, _, _ = select.select(socks, [], [], 1.0)
            except (OSError, ValueError):
                return
            for s in ready:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    socks.remove(s)
                elif s is self.console:
                    self.console_tail.append(chunk)
                    self._console_size += len(chunk)
                    while self._console_size > _CONSOLE_TAIL and len(self.console_tail) > 1:
                        self._console_size -= len(self.console_tail.popleft())
                else:
                    self._ctl_buf = (self._ctl_buf + chunk)[-_CTL_CAP:]
                    while b"\n" in self._ctl_buf:
                        line, self._ctl_buf = self._ctl_buf.split(b"\n", 1)
                        self._ctl_line(line)

    def _ctl_line(self, line: bytes) -> None:
        """Reader thread: one line from the guest agent (untrusted, bounded by the buffer cap)."""
        if line.startswith(b"violation "):
            record = guest_violation(line[10:])
            if record is not None:
                self._guest_violations += 1
                self.reported_violations = True
                record = self._guest_records.admit(record)
            if record is not None:
                self._violation(record)
        elif line.startswith(b"exit "):
            self.guest_exit = line[5:64].decode("ascii", "replace")
        elif line == b"synced":
            self._synced.set()
        elif line.startswith(b"agent ") and self.agent_stamp is None:
            self.agent_stamp = line[6:70].decode("ascii", "replace")
            self._agent.set()

    def wait_agent(self, timeout: float) -> str | None:
        """The guest agent's source stamp once it said it.

        ``""`` when the worker spoke on the data port first (an agent too old to
        state its stamp), None when nothing came in time or QEMU ended.
        """
        deadline = time.monotonic() + timeout
        while not self._agent.wait(0.1):
            if self.poll() is not None:  # first: an ended QEMU's data socket reads as EOF, not a hello
                return None
            if self.hello is not None or select.select([self.sock], [], [], 0)[0]:
                return self.agent_stamp or ""
            if time.monotonic() > deadline:
                return None
        return self.agent_stamp

    def begin_call(self) -> None:
        """HOST side, called by the session when a call starts: the guest supervisor's rate
        limit starts afresh, told only when it reported something (no line on the hot path)."""
        for summary in self._guest_records.summaries(reset=True):
            self._violation(summary)
        if self._guest_violations:
            self._guest_violations = 0
            self.control("call")

    def end_call(self) -> None:
        """The guest supervisor writes its summaries at the next ``call``; the host's are written now."""
        for summary in self._guest_records.summaries(reset=False):
            self._violation(summary)

    def console_text(self, limit: int = 2000) -> str:
        """The end of the guest console (untrusted text, for error messages)."""
        return b"".join(self.console_tail).decode("utf-8", "replace")[-limit:]

    def control(self, command: str) -> None:
        """Send one line to the guest agent (``int``, ``kill``, ``seed HEX``, ``time NS``)."""
        with contextlib.suppress(OSError):
            self.ctl.sendall(command.encode() + b"\n")

    def refresh_guest(self) -> None:
        """Fresh host randomness and the host's clock for the guest (at boot and on resume)."""
        self.control(f"seed {secrets.token_hex(64)}")
        self.control(f"time {time.time_ns()}")

    def pause(self) -> None:
        """Stop the vCPU (QMP ``stop``): an idle pooled guest costs no CPU. Called by the pool filler."""
        self.qmp.command("stop")

    def hold(self, timeout: float) -> None:
        """Pool filler: the agent stops the worker (SIGSTOP) and says so; then the vCPU is paused."""
        self.control("hold")
        self.sync(timeout)
        self.pause()

    def resume(self, timeout: float = 10.0) -> None:
        """QMP ``cont``, then reseed and reset the clock: the guest must not reuse state from before.

        The worker was held (:meth:`hold`) and the agent lets it go only
        after applying ``seed`` and ``time`` (lines in order), so no call
        reaches the worker before the guest's clock and random pool are
        fresh, without waiting here for an answer from the guest.
        """
        self.qmp.command("cont", timeout)
        self.refresh_guest()
        self.control("go")

    def sync(self, timeout: float) -> None:
        """Wait for the agent's ``synced``: every control line sent before it has been applied."""
        self._synced.clear()
        self.control("sync")
        if not self._synced.wait(timeout):
            raise SandboxCrashedError(f"the guest agent did not answer within {timeout:g} s")

    def refill_later(self, refill: Callable[[], None], delay: float) -> None:
        """Taken from the pool: run ``refill`` when this guest is cleaned up or after ``delay`` s.

        A boot costs seconds of CPU under TCG: started with the take, it
        competed with this guest's resume and first call for the cores.
        """
        self._refill = refill
        timer = threading.Timer(delay, self._run_refill)
        timer.name = f"glsandbox-vm-refill-{self.pid}"
        timer.daemon = True
        self._refill_timer = timer
        timer.start()

    def _run_refill(self) -> None:
        refill, self._refill = self._refill, None
        if refill is not None:
            refill()

    # -- Popen-like ---------------------------------------------------------------
    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, signum: int) -> None:
        """SIGINT: the control port's ``int`` (the agent signals the worker); others kill the VM."""
        if self.poll() is not None:
            return
        if signum == signal.SIGINT:
            self.control("int")
        else:
            self.kill()

    def retire(self, grace: float = 0.5) -> None:
        """Called by :meth:`Session.close` after the shutdown frame: QEMU is killed at once.

        The guest holds nothing the host still needs (its exit report is
        untrusted), and its power-off took 70-390 ms of every close under TCG.
        Only when its supervisor reported violations does the host wait up to
        ``grace`` for the worker's exit, which flushes the held summaries.
        """
        if self.reported_violations:
            self.wait(grace)
        self.kill()
        self.cleanup()

    def kill(self) -> None:
        """SIGKILL QEMU (the whole guest with it) and reap it; the cgroup is emptied too."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.wait(5.0)
        if self.cgroup is not None:
            self.cgroup.kill_all(2.0)

    def cleanup(self) -> None:
        """Close the sockets, remove the run directory and the cgroup. Idempotent."""
        if self._cleaned:
            return
        self._cleaned = True
        if self.proc.poll() is None:
            self.kill()
        self._proc_reader.close()
        for s in (self.sock, self.ctl, self.console, self.qmp.sock):
            with contextlib.suppress(OSError):
                s.close()
        shutil.rmtree(self.rundir, ignore_errors=True)
        if self.cgroup is not None:
            with contextlib.suppress(Exception):
                self.cgroup.remove()
        if self.proc.poll() is not None:
            WATCHDOG.forget(self.pid)
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        self._run_refill()  # this guest's CPU is free now

    def host_pids(self) -> list[int]:
        return [self.pid] if self.poll() is None else []

    def exit_info(self) -> ExitInfo:
        """QEMU's exit; when the guest powered off cleanly, the worker status it reported.

        The guest's report is untrusted; a host cgroup OOM kill of QEMU is trusted.
        """
        rc = self.poll()
        if self.cgroup is not None and self.cgroup.oom_killed():
            return ExitInfo(rc, "oom")
        if rc == 0 and self.guest_exit:
            status, _, reason = self.guest_exit.partition(" ")
            try:
                code = int(status)
            except ValueError:
                return ExitInfo(rc)
            if os.WIFSIGNALED(code):
                return ExitInfo(-os.WTERMSIG(code), "oom" if reason == "oom" else None)
            return ExitInfo(os.WEXITSTATUS(code) if os.WIFEXITED(code) else rc)
        return ExitInfo(rc)

    # -- metrics, from outside the guest ----------------------------------------------
    def sample(self) -> ResourceSample:
        """QEMU's own figures: the host cgroup when there is one, else /proc/<qemu pid> (kept-open fds)."""
        if self.cgroup is not None:
            return ResourceSample(**self.cgroup.sample())
        reading = self._proc_reader.read()
        if reading is None:
            return ResourceSample(source="qemu-procfs")
        st, peak = reading
        return ResourceSample(
            cpu_time=st.cpu_seconds, memory_current=st.rss_bytes, memory_peak=peak, source="qemu-procfs"
        )

    def reset_peak(self) -> None:
        if self.cgroup is not None:
            self.cgroup.reset_peak()
            self.cgroup.mark_oom_baseline()

    def describe(self) -> dict[str, Any]:
        """The VM's controls (host-set, trusted) and the guest's own report (untrusted)."""
        facts = dict(self.facts)
        if self.hello is not None and isinstance(self.hello.get("report"), dict):
            facts["guest_report"] = {"trusted": False, **self.hello["report"]}
        return {"vm": facts}


def _listen(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.bind(path)
    s.listen(1)
    return s


def _host_cgroup(ram_mib: int, limits: ResourceLimits) -> tuple[Any, str]:
    """A host cgroup for QEMU (memory = guest RAM + QEMU's overhead), or None and why."""
    from ...confinement import ConfinementError, cgroups

    ok, why = cgroups.available()
    if not ok:
        return None, f"none ({why}): guest RAM is the memory limit"
    cg_limits = ResourceLimits(
        memory_limit_bytes=ram_mib * MiB + QEMU_OVERHEAD,
        cpu_time_limit_seconds=None,
        cpu_percent_limit=limits.cpu_percent_limit,
        max_open_files=None,
        max_processes=64,  # QEMU's threads
        max_file_size_bytes=None,
        disk_quota_bytes=None,
    )
    try:
        return cgroups.create_cgroup(cg_limits, name=f"vm-{secrets.token_hex(6)}"), "memory, pids, cpu"
    except (ConfinementError, OSError) as exc:
        return None, f"none ({exc}): guest RAM is the memory limit"


def launch(accel: Accel, *, ram_mib: int, limits: ResourceLimits, guest_plan: dict[str, Any] | None) -> VMWorker:
    """Start one microVM (not yet connected: the session reads the hello).

    Raises :class:`BackendUnavailableError` without an image or QEMU,
    :class:`SandboxCrashedError` when QEMU does not come up; undoes
    everything on failure.
    """
    image, why = find_image()
    if image is None:
        raise BackendUnavailableError("vm", why, "run scripts/build-vm-image")
    if shutil.which(QEMU) is None:
        raise BackendUnavailableError("vm", f"{QEMU} not found", "install the Debian package qemu-system-x86")
    with contextlib.ExitStack() as undo:
        rundir = tempfile.mkdtemp(prefix="glsandbox-vm-")
        undo.callback(shutil.rmtree, rundir, True)
        listeners = {name: _listen(os.path.join(rundir, f"{name}.sock")) for name in _SOCKETS}
        for s in listeners.values():
            undo.callback(s.close)
        cgroup, cg_why = _host_cgroup(ram_mib, limits)
        if cgroup is not None:
            undo.callback(cgroup.remove)
        log = open(os.path.join(rundir, "qemu.log"), "wb")
        try:
            proc = subprocess.Popen(
                qemu_command(image, accel, ram_mib=ram_mib, rundir=rundir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        undo.callback(_kill_proc, proc)
        cg_dirs = sorted({os.path.dirname(f) for f in cgroup.procs_files()}) if cgroup is not None else []
        WATCHDOG.watch(proc.pid, rundir, cg_dirs)
        if cgroup is not None:
            cgroup.attach([proc.pid])
        conns = {}
        for name in _SOCKETS:
            conns[name] = _accept(listeners[name], proc, rundir)
            undo.callback(conns[name].close)
        facts = {
            "accel": accel.name,
            "accel_reason": accel.reason,
            "guest_ram_bytes": ram_mib * MiB,
            "host_cgroup": cg_why,
            "network": "none (no NIC)",
            "kernel": image.info.get("kernel"),
            "qemu_sandbox": "seccomp on, runas nobody" if os.geteuid() == 0 else "seccomp on",
        }
        worker = VMWorker(
            proc=proc,
            sock=conns["data"],
            ctl=conns["ctl"],
            console=conns["console"],
            qmp=QMP(conns["qmp"]),
            rundir=rundir,
            cgroup=cgroup,
            facts=facts,
        )
        worker.refresh_guest()
        worker.control("plan " + json.dumps(guest_plan or {}, separators=(",", ":")))
        undo.pop_all()
    for s in listeners.values():
        s.close()
    return worker


def _accept(listener: socket.socket, proc: subprocess.Popen[bytes], rundir: str) -> socket.socket:
    deadline = time.monotonic() + 10.0
    while True:
        ready, _, _ = select.select([listener], [], [], 0.1)
        if ready:
            conn, _ = listener.accept()
            return conn
        if proc.poll() is not None or time.monotonic() > deadline:
            try:
                with open(os.path.join(rundir, "qemu.log"), "rb") as fh:
                    err = fh.read(2000).decode("utf-8", "replace").strip()
            except OSError:
                err = ""
            raise SandboxCrashedError(f"QEMU did not connect its chardevs (exit {proc.poll()}): {err}")


def _kill_proc(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def probe_boot(accel_name: str, timeout: float = 20.0) -> tuple[bool, str]:
    """Boot the guest once with ``accel_name`` until its hello; QEMU is killed in every case.

    Called by :func:`~glsandbox_kernel.backends.vm.detect_accel` only on hosts with vmx/svm (a KVM that
    fails pauses QEMU instead of exiting: the timeout catches that).
    """
    from ...protocol import FrameChannel, WorkerGone

    try:
        worker = launch(
            Accel(accel_name, "probe", accel_name == "kvm"),
            ram_mib=256,
            limits=ResourceLimits(),
            guest_plan=None,
        )
    except Exception as exc:  # noqa: BLE001 - the probe reports every failure as text
        return False, f"{type(exc).__name__}: {exc}"
    try:
        t0 = time.monotonic()
        try:
            hello = FrameChannel(worker.sock, max_frame=1 << 20).recv(timeout=timeout)
        except (WorkerGone, OSError) as exc:
            return False, f"guest ended before its hello ({exc}); console: {worker.console_text(300)!r}"
        if hello is None or hello.get("type") != "hello":
            return False, f"no guest hello within {timeout:g} s (QEMU may have paused on an emulation failure)"
        return True, f"probe boot to hello in {time.monotonic() - t0:.2f} s"
    finally:
        worker.kill()
        worker.cleanup()
