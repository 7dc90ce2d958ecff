"""Run part of the test suite inside the VM guest under cgroup v2 (HOST side; ``scripts/test-cgroup2-vm``).

This host's cgroups are v1 (or hybrid), so the cgroup v2 code paths of the
confinement steps never run here. The guest image boots the same kernel with
``cgroup_no_v1=all`` in its self-test mode
(:mod:`glsandbox_kernel.worker.guest_selftest`): cgroup2 with ``nsdelegate``,
``+memory +pids +cpu +io``, then pytest as root in the guest on the
tests of this source tree (a read-only erofs drive made here for each run,
so the image is not rebuilt when only tests change).

:func:`run` boots it, streams the guest console to ``out`` and returns
pytest's exit status (124 when the run's deadline passed, 2 when the image
or QEMU is missing). Timeouts are scaled for emulation: pytest's per-test
timeout and the run's deadline are multiplied by ``GLSANDBOX_VM_TIMEOUT_SCALE``
(default 6 under TCG, 1 under KVM).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .image import find_image
from .qemu import QEMU, kernel_cmdline, qemu_base, qemu_sandboxed

ENV_SCALE = "GLSANDBOX_VM_TIMEOUT_SCALE"
#: pytest's per-test timeout in pyproject.toml, before scaling.
BASE_TEST_TIMEOUT = 120
#: The whole run's deadline before scaling (a few minutes of KVM, more under TCG).
BASE_RUN_TIMEOUT = 200
GUEST_MIB = 1024

#: A subset that means something under cgroup v2 and ends in a few minutes under TCG:
#: the cgroup limits and OOM detection, the engine's limits and escape detection,
#: pooled workers (whose cgroup is renamed on handover) and the attacks the cgroup stops.
DEFAULT_TESTS = (
    "tests/backends/test_confinement.py::test_cgroup_memory_limit_kills_and_oom_is_detected",
    "tests/backends/test_confinement.py::test_cgroup_pids_limit_stops_a_fork_bomb",
    "tests/backends/test_engine.py::test_memory_limit",
    "tests/backends/test_engine.py::test_escape_detection",
    "tests/backends/test_engine.py::test_metrics_are_measured_outside_and_none_when_not_measured",
    "tests/backends/test_engine.py::test_close_leaves_nothing",
    "tests/backends/test_warm_pool.py::test_pooled_worker_is_confined_connected_and_handed_to_one_session",
    "tests/backends/test_warm_pool.py::test_drain_leaves_nothing",
    "tests/escape/test_escape.py::test_fork_bomb_is_stopped_by_the_pids_limit[strict]",
    "tests/escape/test_escape.py::test_memory_bomb_through_tmpfs_is_killed_by_the_cgroup",
)
_EXIT = re.compile(r"glsandbox-selftest: exit (-?\d+)")


def timeout_scale(accel_name: str) -> float:
    """``$GLSANDBOX_VM_TIMEOUT_SCALE``, else 6 under TCG (emulation), 1 under KVM."""
    raw = os.environ.get(ENV_SCALE, "").strip()
    if raw:
        return max(1.0, float(raw))
    return 6.0 if accel_name == "tcg" else 1.0


def tests_drive(source: Path, workdir: str, args: Sequence[str], scale: float) -> str:
    """A read-only erofs image of ``source``'s tests and pyproject.toml, with ``selftest.json``."""
    stage = os.path.join(workdir, "tests-stage")
    shutil.copytree(source / "tests", os.path.join(stage, "tests"), ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(source / "pyproject.toml", stage)
    with open(os.path.join(stage, "selftest.json"), "w") as fh:
        json.dump({"args": list(args), "timeout_scale": scale}, fh)
    image = os.path.join(workdir, "tests.erofs")
    subprocess.run(["mkfs.erofs", "--quiet", image, stage], check=True, stdout=subprocess.DEVNULL)
    return image


def run(
    tests: Sequence[str] = DEFAULT_TESTS,
    *,
    source: Path | None = None,
    out: TextIO = sys.stdout,
    extra_args: Sequence[str] = (),
) -> int:
    """Boot the self-test guest, stream its console to ``out``, return pytest's status."""
    from . import detect_accel
    from .control import WATCHDOG

    image, why = find_image()
    if image is None or shutil.which(QEMU) is None or shutil.which("mkfs.erofs") is None:
        print(f"test-cgroup2-vm: cannot run: {why if image is None else 'qemu or mkfs.erofs missing'}", file=out)
        return 2
    root = source or Path(__file__).resolve().parents[3]
    accel = detect_accel()
    scale = timeout_scale(accel.name)
    args = ["-q", "-rfEs", "--color=no", f"--timeout={int(BASE_TEST_TIMEOUT * scale)}", *extra_args, *tests]
    workdir = tempfile.mkdtemp(prefix="glsandbox-vm-selftest-")
    try:
        drive = tests_drive(root, workdir, args, scale)
        append = f"{kernel_cmdline(accel)} cgroup_no_v1=all glsandbox.selftest=1"
        cmd = qemu_sandboxed(
            [
                *qemu_base(image, accel, ram_mib=GUEST_MIB, append=append),
                "-drive",
                f"id=tests,file={drive},format=raw,if=none,readonly=on",
                "-device",
                "virtio-blk-device,drive=tests",
                "-chardev",
                "stdio,id=con,signal=off",
                "-serial",
                "chardev:con",
            ]
        )
        deadline = time.monotonic() + BASE_RUN_TIMEOUT * scale
        print(f"test-cgroup2-vm: {accel.name} ({accel.reason}); timeout scale {scale:g}", file=out, flush=True)
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        WATCHDOG.watch(proc.pid, workdir, [])
        return _stream(proc, out, deadline)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _stream(proc: subprocess.Popen[bytes], out: TextIO, deadline: float) -> int:
    """Copy QEMU's console to ``out`` until the guest's exit line, QEMU's end or the deadline."""
    import selectors

    assert proc.stdout is not None
    status: int | None = None
    buf = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"test-cgroup2-vm: deadline passed: QEMU {proc.pid} killed", file=out, flush=True)
                return 124
            if not sel.select(min(left, 5.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                print(line, file=out, flush=True)
                found = _EXIT.search(line)
                if found:
                    status = int(found.group(1))
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        from .control import WATCHDOG

        WATCHDOG.forget(proc.pid)
    if status is None:
        print(f"test-cgroup2-vm: the guest ended without a status (QEMU exit {proc.returncode})", file=out)
        return 3
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/test-cgroup2-vm [pytest args or test ids]``: no ids means :data:`DEFAULT_TESTS`."""
    given = list(sys.argv[1:] if argv is None else argv)
    tests = [a for a in given if not a.startswith("-")] or list(DEFAULT_TESTS)
    return run(tests, extra_args=[a for a in given if a.startswith("-")])


if __name__ == "__main__":
    sys.exit(main())
