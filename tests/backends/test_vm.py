"""The VM backend: real QEMU microVMs (TCG here, KVM where it really works).

Boots are few (CPU is scarce and TCG is slow): one shared STRICT session for
the contract basics and the escape battery, one for timeout/kill, one for
memory. The acceleration choice and the refusals are tested by logic,
without booting. Skipped, with the reason, only where QEMU or the guest
image (scripts/build-vm-image) is missing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel import OSSandbox
from glsandbox_kernel.backends.vm import VMBackend, detect_accel
from glsandbox_kernel.backends.vm import accel as vm_accel
from glsandbox_kernel.backends.vm.image import ENV_IMAGE, find_image, image_dir
from glsandbox_kernel.backends.vm.qemu import qemu_command
from glsandbox_kernel.config import (
    FilesystemConfig,
    IsolationType,
    NetworkConfig,
    ResourceLimits,
    SandboxMode,
    create_config_by_level,
)
from glsandbox_kernel.exceptions import (
    BackendUnavailableError,
    SandboxCrashedError,
    SandboxMemoryError,
    SandboxTimeoutError,
)

MiB = 1024 * 1024
_OK, _WHY = VMBackend.available()
needs_vm = pytest.mark.skipif(not _OK, reason=f"VM backend unavailable here: {_WHY}")


def vm_config(**overrides: Any) -> Any:
    return create_config_by_level("strict", isolation_type=IsolationType.VM, **overrides)


def qemu_pids() -> set[int]:
    """Host pids of the QEMU processes this test process started (from /proc, the host's view).

    The backend starts QEMU as a child of its host process (``Popen``), here this
    process or a host it started, and a leaked one stays in that tree while its
    host lives; QEMUs that other test runs on the machine started are not counted.
    """
    parents: dict[int, int] = {}
    qemus = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    comm, rest = fh.read().split(" (", 1)[1].rsplit(") ", 1)
            except (OSError, ValueError, IndexError):
                continue
            parents[int(entry)] = int(rest.split()[1])
            if comm.startswith("qemu-system"):
                qemus.append(int(entry))
    me, out = os.getpid(), set()
    for pid in qemus:
        seen, up = 0, parents.get(pid, 0)
        while up > 1 and up != me and seen < 64:
            up, seen = parents.get(up, 0), seen + 1
        if up == me:
            out.add(pid)
    return out


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.exists(f"/proc/{pid}")


# -- acceleration: logic, no boot -----------------------------------------------------------------


def facts(*, dev: bool = True, flags: tuple[str, ...] = (), modules: tuple[str, ...] = ("kvm",)) -> Any:
    return vm_accel.HostFacts(
        kvm_device=dev, kvm_openable=dev, cpu_flags=frozenset(flags), kvm_modules=frozenset(modules)
    )


def test_kvm_pvm_host_uses_tcg_without_probing() -> None:
    probed: list[bool] = []
    pvm = facts(flags=("hypervisor",), modules=("kvm", "kvm_pvm"))
    acc = vm_accel.decide(pvm, lambda: probed.append(True) or (True, "x"))
    assert acc.name == "tcg" and "KVM-PVM" in acc.reason and not acc.kvm_works
    assert probed == []  # a PVM /dev/kvm would pause QEMU: never tried
    assert vm_accel.decide(facts(dev=False), lambda: (True, "")).name == "tcg"
    assert "no vmx/svm" in vm_accel.decide(facts(), lambda: (True, "")).reason


def test_hardware_kvm_is_used_when_the_probe_boots_and_not_when_it_fails() -> None:
    acc = vm_accel.decide(facts(flags=("vmx",), modules=("kvm", "kvm_intel")), lambda: (True, "hello in 0.4 s"))
    assert acc.name == "kvm" and acc.kvm_works
    assert acc.qemu_args[:2] == ["-accel", "kvm"] and "host" in acc.qemu_args
    failed = vm_accel.decide(facts(flags=("svm",)), lambda: (False, "no guest hello within 20 s"))
    assert failed.name == "tcg" and "probe boot failed" in failed.reason
    assert vm_accel.decide(facts(flags=("vmx",)), lambda: (True, ""), force="tcg").name == "tcg"


@pytest.mark.skipif(find_image()[0] is None, reason=f"no guest image: {find_image()[1]}")
def test_qemu_command_follows_the_decision() -> None:
    image = find_image()[0]
    assert image is not None
    kvm = qemu_command(image, vm_accel.Accel("kvm", "", True), ram_mib=256, rundir="/r")
    tcg = qemu_command(image, vm_accel.Accel("tcg", "", False), ram_mib=256, rundir="/r")
    assert "kvm" in kvm[kvm.index("-accel") + 1] and tcg[tcg.index("-accel") + 1].startswith("tcg")
    for cmd in (kvm, tcg):
        assert "-nodefaults" in cmd and "-no-reboot" in cmd and cmd[cmd.index("-smp") + 1] == "1"
        assert not any(a.startswith(("-net", "-nic")) for a in cmd)  # no NIC at all
        assert "tsc_early_khz=" in cmd[cmd.index("-append") + 1]
    # Under TCG the guest's speculation mitigations guard nothing and cost emulated work; KVM keeps them.
    assert "mitigations=off" in tcg[tcg.index("-append") + 1]
    assert "mitigations" not in kvm[kvm.index("-append") + 1]


def test_doctor_kvm_line_matches_the_host() -> None:
    from glsandbox_kernel.cli import doctor_report

    report = doctor_report()
    kvm = report["features"]["kvm"]
    blocker = vm_accel.kvm_blocker(vm_accel.host_facts())
    if blocker is not None:
        assert kvm == {"available": False, "reason": blocker}
    assert report["backends"]["vm"]["reason"]
    if report["backends"]["vm"]["available"]:
        assert detect_accel().name in report["backends"]["vm"]["reason"].lower()


def test_missing_image_is_refused_with_the_build_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_IMAGE, str(tmp_path))
    assert image_dir() == str(tmp_path)
    ok, why = VMBackend.available()
    assert not ok and "scripts/build-vm-image" in why
    with pytest.raises(BackendUnavailableError, match="build-vm-image"):
        OSSandbox(vm_config())


@pytest.mark.parametrize(
    ("overrides", "what"),
    [
        ({"network": NetworkConfig(allow_network=True, allowed_hosts=("example.org:443",))}, "allowlist"),
        ({"network": NetworkConfig(allow_network=True)}, "any"),
        ({"filesystem": FilesystemConfig(project_dir="/opt/glsandbox-project")}, "host paths"),
        ({"limits": ResourceLimits(memory_limit_bytes=64 * MiB)}, "below the smallest guest"),
    ],
)
def test_policies_the_vm_cannot_enforce_are_refused_before_boot(overrides: dict[str, Any], what: str) -> None:
    before = qemu_pids()
    with pytest.raises(BackendUnavailableError, match=what):
        VMBackend(vm_config(**overrides)).start(session_id="refused")
    assert qemu_pids() <= before


def test_presets_strict_and_moderate_fit_lenient_is_refused_for_its_network() -> None:
    for level in ("strict", "moderate"):
        assert VMBackend(create_config_by_level(level, isolation_type=IsolationType.VM)).refusal() is None
    lenient = VMBackend(create_config_by_level("lenient", isolation_type=IsolationType.VM)).refusal()
    assert lenient is not None and "network mode 'any'" in lenient


# -- one shared STRICT guest: contract basics and escapes -----------------------------------------


@pytest.fixture(scope="module")
def box() -> Iterator[OSSandbox]:
    if not _OK:
        pytest.skip(f"VM backend unavailable here: {_WHY}")
    # Under TCG IPython's first traceback (stack_data, pygments) takes seconds: a grace to match.
    sandbox = OSSandbox(vm_config(execution_timeout=60, interrupt_grace_seconds=30))
    sandbox.start()
    try:
        yield sandbox
    finally:
        pids = sandbox.worker_pids
        sandbox.close()
        assert all(gone(p) for p in pids), "close left a QEMU process"


@needs_vm
def test_execute_runs_in_the_guest_and_state_persists(box: OSSandbox) -> None:
    uid, release = box.execute(lambda: (os.getuid(), os.uname().release))
    assert uid == 65534 and "cloud-amd64" in release
    assert box.run_cell("counter = 41").status == "ok"
    r = box.run_cell("counter += 1\ncounter")
    assert r.status == "ok" and r.outputs[-1]["data"]["text/plain"] == "42"
    assert box.isolation_type == "vm"
    # The image carries msgpack: small frames take the C codec both ways, as on the host backends.
    chan = box.session.chan
    assert chan is not None and chan.fast_send
    assert box.execute(lambda: __import__("glsandbox_kernel.codec_fast").codec_fast.AVAILABLE) is True


@needs_vm
def test_metrics_come_from_qemu_outside_the_guest(box: OSSandbox) -> None:
    box.execute(lambda: bytearray(32 * MiB)[0])
    m = box.metrics
    assert m.measured_by in ("cgroup-v1", "cgroup-v2", "qemu-procfs")
    assert m.memory_peak_bytes is not None and m.memory_peak_bytes > 32 * MiB
    assert m.cpu_time_used is not None and m.cpu_time_used > 0
    [qemu] = box.worker_pids
    with open(f"/proc/{qemu}/comm") as fh:
        assert fh.read().startswith("qemu-system")
    # QEMU names its threads: the vCPU (the guest's own work) is told from its I/O from outside.
    names = set()
    for tid in os.listdir(f"/proc/{qemu}/task"):
        with open(f"/proc/{qemu}/task/{tid}/comm") as fh:
            names.add(fh.read().strip())
    worker = box.session.worker
    assert worker is not None
    vm = worker.describe()["vm"]
    assert vm["network"] == "none (no NIC)" and vm["accel"] in ("kvm", "tcg")
    assert f"CPU 0/{vm['accel'].upper()}" in names
    assert vm["guest_report"]["trusted"] is False


@needs_vm
def test_interrupt_reaches_the_guest_worker_through_the_control_port(box: OSSandbox) -> None:
    assert box.run_cell("kept = 7").status == "ok"

    def on_output(msg: dict[str, Any]) -> None:
        if "started" in str(msg.get("text", "")):
            box.interrupt()  # only once the loop runs: under TCG a cell's set-up can take a while

    r = box.run_cell(
        "import time\nprint('started', flush=True)\nfor _ in range(600):\n    time.sleep(0.1)", on_output=on_output
    )
    assert r.status == "error" and r.error_name == "KeyboardInterrupt"
    after = box.run_cell("kept")
    assert after.outputs[-1].get("data", {}).get("text/plain") == "7", after.outputs  # same guest, state kept


ESCAPE = r"""
import ctypes, errno, os, subprocess
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ALLOWED"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
libc = ctypes.CDLL(None, use_errno=True)
def checked(rc):
    if rc != 0:
        raise OSError(ctypes.get_errno(), "")
attempt("host_secret", lambda: open(SECRET).read())
attempt("exec", lambda: subprocess.run(["/bin/true"]))
attempt("mount", lambda: checked(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
attempt("unshare_user", lambda: checked(libc.unshare(0x10000000)))
attempt("kill_agent", lambda: os.kill(1, 9))
ports = [p for p in os.listdir("/dev") if p.startswith("vport")]
attempt("open_port", lambda: open("/dev/" + ports[0], "wb") if ports else open("/nonexistent"))
attempt("write_root", lambda: open("/etc/escaped", "w"))
out["interfaces"] = sorted(os.listdir("/sys/class/net"))
attempt("ptrace_agent", lambda: checked(libc.ptrace(16, 1, 0, 0)))
with open("/tmp/written-in-guest", "w") as fh:
    fh.write("guest")
out
"""


@needs_vm
def test_escape_attempts_are_detected_and_fail_the_call_strict(box: OSSandbox, tmp_path: Path) -> None:
    """STRICT (enforcing): the guest supervisor's records fail the call, like on namespace."""
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    r = box.run_cell(f"SECRET = {str(secret)!r}\n" + ESCAPE)
    assert r.status == "error" and r.error_name == "SandboxEscapeError", r.traceback
    assert_guest_detected(r.violations)
    assert secret.read_text() == "host only"
    assert box.execute(lambda: 1) == 1  # the guest and its worker survived


@needs_vm
def test_escape_attempts_are_contained_judged_from_the_host_permissive(tmp_path: Path) -> None:
    cfg = vm_config(sandbox_mode=SandboxMode.PERMISSIVE, interrupt_grace_seconds=30)
    with OSSandbox(cfg) as sb:
        sb.start()
        violations = escape_battery(sb, tmp_path, exec_result="EPERM")  # execve denied by the guest's filter
    assert_guest_detected(violations)
    assert any(v["kind"] == "exec" for v in violations)  # STRICT's denied execve is recorded too


@needs_vm
def test_escape_attempts_are_contained_judged_from_the_host_moderate(tmp_path: Path) -> None:
    cfg = create_config_by_level(
        "moderate", isolation_type=IsolationType.VM, interrupt_grace_seconds=30, sandbox_mode=SandboxMode.PERMISSIVE
    )
    with OSSandbox(cfg) as sb:
        sb.start()
        violations = escape_battery(sb, tmp_path, exec_result="ALLOWED")  # MODERATE allows new programs
    assert_guest_detected(violations)


def assert_guest_detected(violations: list[dict[str, Any]]) -> None:
    """The escape-class syscalls were recorded by the guest agent's supervisor: untrusted, named."""
    syscalls = {v.get("syscall") for v in violations}
    assert {"mount", "unshare", "ptrace"} <= syscalls, violations
    assert all(v["trusted"] is False and v["source"] == "guest" for v in violations)
    assert all(v.get("escape") for v in violations if v.get("syscall") in ("mount", "unshare", "ptrace"))


def escape_battery(box: OSSandbox, tmp_path: Path, *, exec_result: str) -> list[dict[str, Any]]:
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    before = qemu_pids()
    [qemu] = box.worker_pids
    r = box.run_cell(f"SECRET = {str(secret)!r}\n" + ESCAPE)
    assert r.status == "ok", r.traceback
    seen = eval(r.outputs[-1]["data"]["text/plain"])  # our own dict literal of strings
    assert seen.pop("interfaces") == ["lo"]  # no NIC: nothing to route anywhere
    assert seen == {
        "host_secret": "ENOENT",  # the host's files do not exist in the guest
        "exec": exec_result,
        "mount": "EPERM",
        "unshare_user": "EPERM",
        "kill_agent": "EPERM",  # the worker is uid 65534, the agent root
        "open_port": "EACCES",  # the virtio-serial ports belong to the agent
        "write_root": "EROFS",  # the root image is read-only
        "ptrace_agent": "EPERM",
    }
    # From the host: the secret is untouched, the guest's file is not on the host,
    # the same single QEMU runs (unprivileged) and no new host process appeared.
    assert secret.read_text() == "host only"
    assert not os.path.exists("/tmp/written-in-guest")
    assert qemu_pids() == before and box.worker_pids == [qemu]
    with open(f"/proc/{qemu}/status") as fh:
        uids = next(line for line in fh if line.startswith("Uid:")).split()[1:]
    if os.geteuid() == 0:
        assert set(uids) == {"65534"}  # QEMU itself dropped to nobody
    assert box.execute(lambda: 1) == 1  # the guest survived every attempt
    return r.violations


# -- timeouts, kills, memory: their own guests ------------------------------------------------------


@needs_vm
def test_timeout_kills_qemu_and_close_leaves_none() -> None:
    with OSSandbox(vm_config(execution_timeout=15)) as sb:
        sb.start()
        [qemu] = sb.worker_pids
        assert qemu in qemu_pids()
        with pytest.raises(SandboxTimeoutError):
            sb.execute(time.sleep, 600)
        assert gone(qemu), "the timeout left QEMU running"
    assert qemu not in qemu_pids()


@needs_vm
def test_guest_memory_is_the_limit() -> None:
    with OSSandbox(vm_config(limits=ResourceLimits(memory_limit_bytes=192 * MiB), execution_timeout=60)) as sb:
        total = sb.execute(lambda: int(open("/proc/meminfo").readline().split()[1]) * 1024)
        assert 64 * MiB < total <= 192 * MiB
        [qemu] = sb.worker_pids
        # the guest's memory cgroup OOM-kills the worker; the agent says so (untrusted), the host maps it
        with pytest.raises(SandboxMemoryError):
            sb.execute(lambda: [bytearray(16 * MiB) for _ in range(64)])
        assert gone(qemu)


@needs_vm
def test_a_killed_qemu_is_a_crash_not_a_hang() -> None:
    with OSSandbox(vm_config(execution_timeout=60)) as sb:
        sb.start()
        [qemu] = sb.worker_pids
        threading.Timer(1.0, os.kill, (qemu, signal.SIGKILL)).start()
        with pytest.raises(SandboxCrashedError, match="SIGKILL"):
            sb.execute(time.sleep, 30)
        assert gone(qemu)


@needs_vm
def test_qemu_ending_before_the_agent_spoke_is_a_crash_with_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """QEMU that connected its chardevs, then failed (a port past max_ports), is not called a stale image."""
    from glsandbox_kernel.backends.vm import machine

    def failing(*args: Any, **kwargs: Any) -> list[str]:
        cmd = qemu_command(*args, **kwargs)
        return [("virtio-serial-device,max_ports=2" if a.startswith("virtio-serial-device") else a) for a in cmd]

    monkeypatch.setattr(machine, "qemu_command", failing)
    with pytest.raises(SandboxCrashedError, match=r"QEMU exited .* before the guest agent spoke"):
        with OSSandbox(vm_config()) as sb:
            sb.start()


# -- the pre-booted pool ------------------------------------------------------------------------------


@needs_vm
def test_pooled_guest_is_paused_then_resumed_with_a_fresh_clock_and_no_leftovers() -> None:
    from glsandbox_kernel.backends.vm import POOLS

    before = qemu_pids()
    POOLS.set_size(1)
    try:
        with OSSandbox(vm_config()) as first:
            first.start()  # a cold boot; its hello starts the pool's boot
            assert POOLS.settle(180)
        [pool] = POOLS.pools()
        [idle] = pool.idle()
        assert idle.qmp.command("query-status")["return"]["status"] == "paused"  # costs no CPU while it waits
        time.sleep(4.0)  # the guest's clock stands still meanwhile
        with OSSandbox(vm_config()) as second:
            guest_now = second.execute(time.time)
            worker = second.session.worker
            assert worker is idle and worker.describe()["vm"]["pooled"] is True
            assert abs(guest_now - time.time()) < 2.0  # reset on resume, not 4 s behind
            assert idle.qmp.command("query-status")["return"]["status"] == "running"
            pid = idle.pid
        assert gone(pid)
    finally:
        POOLS.set_size(0)  # drains: the refill booted after the handover is killed
    assert qemu_pids() <= before


POOL_THEN_HANG = """
import os, sys, time
from glsandbox_kernel.backends.vm import POOLS, VMBackend
from glsandbox_kernel.config import IsolationType, create_config_by_level

POOLS.set_size(1)
backend = VMBackend(create_config_by_level("strict", isolation_type=IsolationType.VM))
pool = POOLS.get(backend.pool_key(), backend._launch_pooled)
pool.refill()
pool.settle(240)  # the filler ends with a guest, or gives up (a stale image: at once, with the reason)
if not pool.idle():
    sys.exit(f"pool did not fill: {pool.last_error}")
[idle] = pool.idle()
cgroup = sorted({os.path.dirname(f) for f in idle.cgroup.procs_files()})[0] if idle.cgroup else "-"
print(idle.pid, idle.qmp.command("query-status")["return"]["status"], idle.rundir, cgroup, flush=True)
time.sleep(600)
"""


@needs_vm
def test_a_paused_pooled_guest_dies_with_its_host_even_on_sigkill() -> None:
    import subprocess
    import sys

    host = subprocess.Popen([sys.executable, "-c", POOL_THEN_HANG], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        line = host.stdout.readline().split()
        assert len(line) == 4, f"the host process ended: {host.wait()}"
        qemu, status, rundir, cgroup = int(line[0]), line[1], line[2], line[3]
        assert os.path.isdir(rundir)
        assert status == "paused" and qemu in qemu_pids()
    finally:
        host.kill()  # SIGKILL: no atexit, no pool drain runs in the host
        host.wait()
    assert gone(qemu), "a paused QEMU outlived its host"
    leftovers = [p for p in (rundir, cgroup) if p != "-"]
    deadline = time.monotonic() + 10
    while any(os.path.exists(p) for p in leftovers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in leftovers if os.path.exists(p)]  # its sockets and host cgroup went with it


# -- a stale image: refused at the agent's first line, never a hang -------------------------------------


@pytest.fixture
def stale_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """This package's image, but the host believes its guest sources are others (as after an edit)."""
    import json

    from glsandbox_kernel.backends import vm as vm_pkg
    from glsandbox_kernel.backends.vm import image as vm_image

    real = find_image()[0]
    assert real is not None
    for name in ("vmlinuz", "initramfs.cpio.gz", "root.erofs"):
        (tmp_path / name).symlink_to(os.path.join(real.directory, name))
    other = "0123456789abcdef"
    (tmp_path / "image.json").write_text(json.dumps({**real.info, "src_hash": other}))
    monkeypatch.setenv(ENV_IMAGE, str(tmp_path))
    monkeypatch.setattr(vm_image, "source_hash", lambda: other)
    monkeypatch.setattr(vm_pkg, "source_hash", lambda: other)
    yield other


@needs_vm
def test_a_stale_image_is_refused_at_the_agents_first_line(stale_image: str) -> None:
    before = qemu_pids()
    # refused on the agent's first control line, before any hello (not the hello timeout's error)
    with pytest.raises(BackendUnavailableError, match=r"stale guest image.*build-vm-image") as info:
        with OSSandbox(vm_config()) as sb:
            sb.start()
    assert "hello" not in str(info.value)
    assert qemu_pids() <= before


@needs_vm
def test_a_stale_image_makes_the_pool_give_up_with_the_reason(stale_image: str) -> None:
    from glsandbox_kernel.backends.vm import POOLS

    before = qemu_pids()
    POOLS.set_size(1)
    try:
        backend = VMBackend(vm_config())
        pool = POOLS.get(backend.pool_key(), backend._launch_pooled)
        pool.refill()
        assert pool.settle(150)  # three failed boots, then the filler stops (no endless retry)
        assert isinstance(pool.last_error, BackendUnavailableError) and "stale" in str(pool.last_error)
        assert pool.idle() == []
    finally:
        POOLS.set_size(0)
    assert qemu_pids() <= before
