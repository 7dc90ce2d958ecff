"""Which acceleration the VM backend really gets here: KVM or TCG (HOST side).

``/dev/kvm`` alone proves nothing: on a KVM-PVM host (``/sys/module/kvm_pvm``,
no ``vmx``/``svm`` CPU flags) the device opens, but Debian's guest kernels
hit emulation failures (``cmpxchg16b``, ``xrstor``) and QEMU *pauses*
instead of exiting. So KVM is chosen only when the CPU shows hardware
virtualisation **and** a probe boot reaches the guest agent's hello;
otherwise TCG (software emulation), with the reason.

:func:`decide` is pure (facts in, decision out) so the logic is tested
without booting; :func:`glsandbox_kernel.backends.vm.detect_accel` gathers
the facts and runs the probe boot (:func:`.machine.probe_boot`) once per
process, so this module imports nothing of the machine (no import cycle).
``GLSANDBOX_VM_ACCEL=kvm|tcg`` forces a choice (a forced ``kvm`` that does
not work fails at boot, loudly).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

ENV_FORCE = "GLSANDBOX_VM_ACCEL"


@dataclasses.dataclass(frozen=True)
class HostFacts:
    """What the host shows about virtualisation (read by :func:`host_facts`)."""

    kvm_device: bool
    kvm_openable: bool
    cpu_flags: frozenset[str]
    kvm_modules: frozenset[str]


@dataclasses.dataclass(frozen=True)
class Accel:
    """The decision: ``name`` is ``"kvm"`` or ``"tcg"``; ``reason`` says why."""

    name: str
    reason: str
    kvm_works: bool

    @property
    def qemu_args(self) -> list[str]:
        """The QEMU options for this acceleration (TCG: a small translation cache)."""
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        return ["-accel", "tcg,tb-size=32", "-cpu", "max"]


def host_facts() -> HostFacts:
    """Read /dev/kvm, the CPU flags and the loaded KVM modules (no side effects)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    try:
        modules = frozenset(m for m in os.listdir("/sys/module") if m.startswith("kvm"))
    except OSError:
        modules = frozenset()
    exists = os.path.exists("/dev/kvm")
    return HostFacts(
        kvm_device=exists,
        kvm_openable=exists and os.access("/dev/kvm", os.R_OK | os.W_OK),
        cpu_flags=frozenset(flags & {"vmx", "svm", "hypervisor"}),
        kvm_modules=modules,
    )


def kvm_blocker(facts: HostFacts) -> str | None:
    """Why KVM cannot run a Debian guest here without trying, or None when a probe may tell."""
    if not facts.kvm_device:
        return "no /dev/kvm"
    if not facts.kvm_openable:
        return "/dev/kvm is not readable and writable by this user"
    if "kvm_pvm" in facts.kvm_modules and not facts.cpu_flags & {"vmx", "svm"}:
        return (
            "/dev/kvm is KVM-PVM (kvm_pvm loaded, no vmx/svm CPU flags): it cannot run Debian guest "
            "kernels (emulation failures on cmpxchg16b/xrstor)"
        )
    if not facts.cpu_flags & {"vmx", "svm"}:
        return "/dev/kvm exists but the CPU shows no vmx/svm flag (no hardware virtualisation)"
    return None


def decide(facts: HostFacts, probe: Callable[[], tuple[bool, str]], force: str | None = None) -> Accel:
    """Pure decision: forced choice, else KVM when nothing blocks it and ``probe`` boots."""
    if force in ("kvm", "tcg"):
        return Accel(force, f"forced by {ENV_FORCE}={force}", force == "kvm")
    blocker = kvm_blocker(facts)
    if blocker is not None:
        return Accel("tcg", f"TCG software emulation: {blocker}", False)
    ok, why = probe()
    if ok:
        return Accel("kvm", f"KVM: hardware virtualisation ({why})", True)
    return Accel("tcg", f"TCG software emulation: a KVM probe boot failed ({why})", False)
