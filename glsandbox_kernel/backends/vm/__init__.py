"""VM backend: each worker in its own QEMU microVM (HOST side).

The guest is the Debian cloud kernel with a busybox initramfs and a
read-only erofs root built by ``scripts/build-vm-image``; its PID 1 is the
guest agent (:mod:`glsandbox_kernel.worker.guest`), which runs the unchanged
worker as an unprivileged guest user and relays its frames over a
virtio-serial port. The host side:

- :mod:`.accel` decides KVM or TCG (KVM only with vmx/svm and a probe boot
  that works: a KVM-PVM ``/dev/kvm`` cannot run Debian kernels);
- :mod:`.image` finds the image and refuses one built from other sources;
- :mod:`.machine` starts QEMU (``-M microvm``, no NIC, QEMU's own seccomp
  sandbox, unprivileged QEMU user) and is the host view of the worker;
- :mod:`.control` is QEMU's QMP monitor and the watchdog process that
  kills our QEMUs should this process die (a paused guest cannot power off);
- :data:`POOLS` (the generic :mod:`..pool`) keeps pre-booted guests paused
  with QMP ``stop``; ``start`` resumes one with ``cont`` and reseeds its
  random pool and clock.

Policies: memory = guest RAM (plus a host cgroup on QEMU where cgroups
work); network none only (no NIC; the proxy over virtio-serial is not
built, so MODERATE/LENIENT network policies are refused); the filesystem is
the guest's own read-only image plus tmpfs (host paths and project folders
are refused); rlimits, no_new_privs and seccomp (execve denied at STRICT)
applied in the guest by the same confinement modules. Escape-class syscalls
are refused in the guest and recorded by the guest agent's seccomp
supervisor (the host's own :class:`~glsandbox_kernel.supervisor.Supervisor`,
run by the agent as root in the guest), relayed on the control port and
recorded here as ``trusted: false`` (the agent is inside the guest).

At boot the agent first states the sources its image was built from
(``agent <stamp>``): an image other than this package's is refused at
once (:class:`BackendUnavailableError`), never after a hello timeout.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import types
from typing import Any, ClassVar

from ...config import IsolationType
from ...exceptions import BackendUnavailableError, SandboxCrashedError
from ..base import SandboxBackend, WorkerProcess
from ..pool import PoolGroup, PoolPolicy, discard
from . import accel as _accel
from .image import build_hint, find_image, in_checkout, source_hash
from .machine import QEMU, MiB, VMWorker, launch, probe_boot

__all__ = ["MIN_GUEST_MIB", "POOLS", "VM_POOL_POLICY", "VMBackend", "VMWorker", "detect_accel", "probe_kvm"]


@functools.cache
def detect_accel() -> _accel.Accel:
    """The acceleration for this process's VMs (probe boot at most once)."""
    force = os.environ.get(_accel.ENV_FORCE, "").strip().lower() or None
    return _accel.decide(_accel.host_facts(), lambda: probe_boot("kvm"), force)


def probe_kvm() -> tuple[bool, str]:
    """The ``kvm`` line of ``glsandbox doctor``: usable for guests here, and why (not)."""
    blocker = _accel.kvm_blocker(_accel.host_facts())
    if blocker is not None:
        return False, blocker
    accel = detect_accel()
    return accel.kvm_works, accel.reason


#: Pre-booted, paused guests. Off by default (``GLSANDBOX_VM_POOL=N`` turns it
#: on): each one holds its guest RAM and a boot costs seconds of CPU under TCG.
VM_POOL_POLICY = PoolPolicy(env_var="GLSANDBOX_VM_POOL", default_size=0, maximum=4, max_keys=2, backoff=1.0, label="vm")
POOLS: PoolGroup[VMWorker] = PoolGroup(VM_POOL_POLICY)
atexit.register(POOLS.drain_all)
_DETECTION = "guest-reported: the guest agent's seccomp supervisor, relayed as trusted: false"

#: The smallest guest that boots the agent and a worker with headroom.
MIN_GUEST_MIB = 128
#: Seconds a TCG guest may take to reach its hello before QEMU is killed.
TCG_BOOT_TIMEOUT = 120.0
DEFAULT_GUEST_MIB = 512
#: Seconds after a take from the pool before its refill boots, unless the guest ends sooner.
REFILL_DELAY = 1.0


class VMBackend(SandboxBackend):
    """A hardware-virtualised (KVM) or emulated (TCG) guest per worker."""

    name: ClassVar[str] = "vm"
    isolation_type: ClassVar[IsolationType] = IsolationType.VM
    strength: ClassVar[int] = 100
    #: Not a daemon, but a VM per session is too heavy to be the silent default.
    needs_daemon: ClassVar[bool] = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """QEMU and a current image present; says which acceleration and why."""
        if shutil.which(QEMU) is None:
            return False, f"{QEMU} not found"
        image, why = find_image()
        if image is None:
            return False, why
        acc = detect_accel()
        return True, f"QEMU microvm, {acc.reason}; guest {why}"

    @classmethod
    def unavailable_hint(cls) -> str:
        qemu = "scripts/install-system-deps" if in_checkout() else "your distribution's package"
        return f"install qemu-system-x86 ({qemu}), then {build_hint()}"  # a wheel has no scripts/ (review 11)

    # -- policy ---------------------------------------------------------------------
    def refusal(self) -> str | None:
        """What this config asks that the VM backend cannot enforce, or None."""
        cfg = self.config
        if cfg.network.mode != "none":
            return (
                f"network mode {cfg.network.mode!r}: the VM has no NIC and no proxy over virtio-serial yet "
                "(use security level strict or allow_network=False)"
            )
        fs = cfg.filesystem
        if fs.root or fs.project_dir or fs.readonly_paths or fs.writable_paths:
            return "host paths (root, project folder, readonly/writable paths) cannot be shared into the VM guest yet"
        mem = cfg.limits.memory_limit_bytes
        if mem is not None and mem < MIN_GUEST_MIB * MiB:
            return f"memory limit {mem // MiB} MiB is below the smallest guest ({MIN_GUEST_MIB} MiB of guest RAM)"
        return None

    def guest_ram_mib(self) -> int:
        """Guest RAM = the memory limit (rounded up to MiB), or the default."""
        mem = self.config.limits.memory_limit_bytes
        return DEFAULT_GUEST_MIB if mem is None else -(-mem // MiB)

    def guest_plan(self) -> dict[str, Any]:
        """HOST side: the confinement sections the guest agent applies to the worker (wire form)."""
        from ...confinement import capabilities, rlimits, seccomp
        from ...confinement.sections import to_wire

        limits = self.config.limits
        return {
            # The address-space limit is the guest's RAM; NPROC counts the worker uid's processes.
            "rlimits": to_wire(rlimits.plan_rlimits(dataclasses.replace(limits, memory_limit_bytes=None))),
            "no_new_privs": to_wire(capabilities.NoNewPrivsSection()),
            "seccomp": to_wire(seccomp.SeccompPolicy.make(deny_exec=not self.config.new_programs_allowed, notify=True)),
            # The guest agent's supervisor: the same policy the host's would apply.
            "supervisor": {
                "deny_exec": not self.config.new_programs_allowed,
                "allowed_executables": list(self.config.whitelist.allowed_executables),
            },
        }

    def pool_key(self) -> str:
        """What a pooled guest must share with this config: RAM, plan, host limits, image, accel."""
        image, _why = find_image()
        blob = {
            "ram": self.guest_ram_mib(),
            "plan": self.guest_plan(),
            "cpu_percent": self.config.limits.cpu_percent_limit,
            "image": image.info.get("stamp") if image else None,
            "accel": detect_accel().name,
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=repr).encode()).hexdigest()

    def start(self, *, session_id: str) -> WorkerProcess:
        """A guest for ``session_id``: a paused pre-booted one resumed (``cont``), else booted now.

        A pooled guest has said hello already; the pool refills in the background once
        this guest ends, or after :data:`REFILL_DELAY` seconds.
        """
        ok, why = self.available()
        if not ok:
            raise BackendUnavailableError(self.name, why, self.unavailable_hint())
        refused = self.refusal()
        if refused is not None:
            raise BackendUnavailableError(self.name, refused, "use another isolation type for this policy")
        if POOLS.size() > 0:
            pool = POOLS.get(self.pool_key(), self._launch_pooled)
            taken = pool.take()
            if taken is not None:
                # Not now: a boot would share the cores with this take (a cold start refills after its hello).
                taken.refill_later(pool.refill, REFILL_DELAY)
                try:
                    taken.resume()
                except BaseException:
                    discard(taken)
                    raise
                taken.facts["pooled"] = True
                del taken.facts["pool_filler"]
                return taken
        return self._boot()

    def _boot(self) -> VMWorker:
        worker = launch(
            detect_accel(), ram_mib=self.guest_ram_mib(), limits=self.config.limits, guest_plan=self.guest_plan()
        )
        worker.facts["escape_detection"] = _DETECTION
        worker.facts["pooled"] = False
        return worker

    def _launch_pooled(self) -> VMWorker:
        """Pool filler thread: boot, read the hello, pause the vCPU; undo on failure."""
        from ...session import HELLO_TIMEOUT

        worker = self._boot()
        worker.facts["pool_filler"] = True
        try:
            self.connect(worker, max_frame=self.config.max_frame_bytes, timeout=HELLO_TIMEOUT)
            warm_up(worker, TCG_BOOT_TIMEOUT)
            worker.hold(TCG_BOOT_TIMEOUT)
        except BaseException:
            discard(worker)
            raise
        return worker

    def connect(self, worker: WorkerProcess, *, max_frame: int, timeout: float) -> None:
        """Read the guest's hello; without one in time QEMU is killed here, with the console tail.

        Under TCG a boot takes seconds, and tens of seconds on a loaded host:
        the wait is at least :data:`TCG_BOOT_TIMEOUT` there.
        """
        connected = worker.hello is not None
        if isinstance(worker, VMWorker) and worker.facts.get("accel") == "tcg":
            timeout = max(timeout, TCG_BOOT_TIMEOUT)
        try:
            if isinstance(worker, VMWorker) and not connected:
                check_agent(worker, timeout)
            super().connect(worker, max_frame=max_frame, timeout=timeout)
        except BaseException as exc:
            worker.kill()
            if isinstance(worker, VMWorker) and exc.args and not isinstance(exc, BackendUnavailableError):
                exc.args = (f"{exc.args[0]} (guest console: {worker.console_text(400)!r})", *exc.args[1:])
            raise
        if not connected and POOLS.size() > 0 and isinstance(worker, VMWorker) and not worker.facts.get("pool_filler"):
            # A cold boot is up: only now boot the pool's guest, so the two never share the CPU.
            POOLS.get(self.pool_key(), self._launch_pooled).refill()

    def add_violation_listener(self, worker: WorkerProcess, listener: Any) -> None:
        """The guest supervisor's records (``trusted: false``) go to the session."""
        if isinstance(worker, VMWorker):
            worker.add_violation_listener(listener)


def _identity(x: Any) -> Any:
    return x


def warm_up(worker: VMWorker, timeout: float) -> None:
    """Pool filler thread, before the pause: one call by value and one agent round trip.

    A worker's first call runs code paths for the first time (cloudpickle
    rebuilding a function by value, the codec's reply; under TCG also their
    translation), and the agent may still be busy after the hello: paid
    here, not by the session that takes the guest. The call is our own
    identity function; the reply is checked like any other. The caller
    then holds the worker and pauses the guest (:meth:`VMWorker.hold`).
    """
    import cloudpickle

    chan = worker.chan
    if chan is None:
        raise SandboxCrashedError("the pooled guest has no channel")
    fn = types.FunctionType(_identity.__code__, {}, "_warm_up")  # no module: travels by value, as user code does
    chan.send({"type": "call", "id": 0, "fn": cloudpickle.dumps(fn), "args": cloudpickle.dumps(((1,), {}))})
    reply = chan.recv(timeout=timeout)
    if reply is None or reply.get("type") != "result" or reply.get("ok") is not True or reply.get("value") != 1:
        raise SandboxCrashedError(f"the pooled guest's warm-up call failed: {str(reply)[:200]}")


def check_agent(worker: VMWorker, timeout: float) -> None:
    """HOST side, before the hello: the guest agent's first line names its image's sources.

    Raises :class:`BackendUnavailableError` for an image built from other
    sources (or too old to say), :class:`SandboxCrashedError` without a word in ``timeout``.
    """
    stamp = worker.wait_agent(timeout)
    if stamp is None and worker.poll() is not None:
        try:
            with open(os.path.join(worker.rundir, "qemu.log"), "rb") as fh:
                err = fh.read(600).decode("utf-8", "replace").strip()
        except OSError:
            err = ""
        raise SandboxCrashedError(f"QEMU exited (status {worker.poll()}) before the guest agent spoke: {err}")
    if stamp is None:
        raise SandboxCrashedError(f"the guest agent did not start within {timeout:g} s")
    want = source_hash()
    if stamp != want:
        raise BackendUnavailableError(
            "vm",
            f"stale guest image: its guest agent was built from sources {stamp or '(unstated: older image)'}, "
            f"this package is {want}",
            "run scripts/build-vm-image",
        )
