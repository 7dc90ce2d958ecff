"""The QEMU command line of a guest (HOST side, pure): microvm, no NIC, read-only root, QEMU's own seccomp.

Used by :mod:`.machine` (a worker guest: console, data and control ports,
QMP) and :mod:`.selftest` (the cgroup v2 self-test guest).
"""

from __future__ import annotations

import os
import shutil

from .accel import Accel
from .image import GuestImage

QEMU = "qemu-system-x86_64"


def host_tsc_khz() -> int | None:
    """The host CPU clock in kHz for ``tsc_early_khz`` (without it TCG boots may hang)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":", 1)[1]) * 1000)
    except (OSError, ValueError):
        pass
    return None


def kernel_cmdline(accel: Accel) -> str:
    """The guest kernel's arguments (the issue's recipe), plus ``mitigations=off`` under TCG.

    Under TCG the guest's speculation mitigations guard nothing: guest code
    never runs on the host's branch predictors or return stack as such (TCG
    translates every guest indirect branch and return into its own lookup),
    so retpolines and return-stack filling only add emulated work to every
    interrupt and system call (about a tenth of QEMU's CPU per warm call,
    measured here). Under KVM the guest runs on the real CPU: the kernel's
    defaults stay.
    """
    args = "console=ttyS0 quiet panic=-1 tsc=reliable no_timer_check"
    if accel.name != "kvm":
        # psi=0: pressure-stall accounting runs at every guest context switch (about 1.4k of the
        # 71k guest instructions of a warm call, counted with a TCG plugin); nothing reads it.
        args += " mitigations=off psi=0"
    khz = host_tsc_khz()
    return f"{args} tsc_early_khz={khz}" if khz else args


def qemu_base(image: GuestImage, accel: Accel, *, ram_mib: int, append: str, smp: int = 1) -> list[str]:
    """The QEMU argv every guest shares: microvm, no NIC, no firmware ROMs, read-only root, rng."""
    qemu = shutil.which(QEMU) or QEMU
    return [
        qemu,
        "-M",
        "microvm,x-option-roms=off",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        # Thread names (``CPU 0/TCG``, ``CPU 0/KVM``): the host tells the guest's own work from
        # QEMU's I/O in /proc and perf (bench_vm.py splits QEMU's CPU per call by them).
        "-name",
        "glsandbox,debug-threads=on",
        *accel.qemu_args,
        "-smp",
        str(smp),
        "-m",
        str(ram_mib),
        "-kernel",
        image.kernel,
        "-initrd",
        image.initrd,
        "-append",
        append,
        "-drive",
        f"id=root,file={image.root},format=raw,if=none,readonly=on",
        "-device",
        "virtio-blk-device,drive=root",
        "-device",
        "virtio-rng-device",
    ]


def qemu_sandboxed(cmd: list[str]) -> list[str]:
    """``cmd`` with QEMU's own seccomp filter: no exec, no obsolete or resource-control calls.

    As root QEMU drops to nobody once set up (its setuid needs elevateprivileges).
    """
    sandbox = "on,obsolete=deny,spawn=deny,resourcecontrol=deny"
    if os.geteuid() == 0:
        return [*cmd, "-sandbox", sandbox, "-runas", "nobody"]
    return [*cmd, "-sandbox", sandbox + ",elevateprivileges=deny"]


def qemu_command(image: GuestImage, accel: Accel, *, ram_mib: int, rundir: str) -> list[str]:
    """A worker guest's QEMU argv: the base, the serial console and two virtio-serial ports, QMP."""
    cmd = [
        *qemu_base(image, accel, ram_mib=ram_mib, append=kernel_cmdline(accel)),
        "-chardev",
        f"socket,id=con,path={rundir}/console.sock",
        "-serial",
        "chardev:con",
        # Three ports (0, kept for a console, and the two named below), not 31: virtio-mmio has one
        # interrupt line, and the guest's handler checks every queue of the device at each interrupt
        # (8 queues instead of 64: 1.3k fewer guest instructions per warm call).
        "-device",
        "virtio-serial-device,max_ports=3",
        "-chardev",
        f"socket,id=data,path={rundir}/data.sock",
        "-device",
        "virtserialport,chardev=data,name=glsandbox.data",
        "-chardev",
        f"socket,id=ctl,path={rundir}/ctl.sock",
        "-device",
        "virtserialport,chardev=ctl,name=glsandbox.ctl",
        # QMP (stop/cont for the warm pool) on a socket the host listens on, like the others.
        "-chardev",
        f"socket,id=qmp,path={rundir}/qmp.sock",
        "-mon",
        "chardev=qmp,mode=control",
    ]
    return qemu_sandboxed(cmd)
