"""The init of a zygote-cloned NAMESPACE sandbox is the tiny program (confinement/tiny_init.py).

Real sandboxes from the real zygote: the init (pid 1 of the sandbox) holds a
few KiB, keeps only CAP_KILL, forwards the host's signals to the worker and
hands the worker's exit over to the host, as the Python init did.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel import IsolationType, OSSandbox
from glsandbox_kernel.config import create_config_by_level
from glsandbox_kernel.confinement import tiny_init
from glsandbox_kernel.confinement.namespaces import userns_available
from glsandbox_kernel.exceptions import SandboxCrashedError, SandboxRemoteError

needs_userns = pytest.mark.skipif(not userns_available()[0], reason=f"no user namespaces: {userns_available()[1]}")
x86_64 = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the program is x86-64 code")


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as fh:
        return dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)


def _pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))


@x86_64
@pytest.mark.skipif(not (shutil.which("as") and shutil.which("objcopy")), reason="needs binutils (as, objcopy)")
def test_code_is_the_source_assembled(tmp_path: Path) -> None:
    src = Path(tiny_init.__file__).with_name("tiny_init_x86_64.S")
    subprocess.run(["as", "--64", "-o", str(tmp_path / "o"), str(src)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "o"), str(tmp_path / "b")], check=True)
    assert (tmp_path / "b").read_bytes() == tiny_init.CODE


def _kill_init() -> str:
    try:
        os.kill(1, signal.SIGKILL)
    except PermissionError:
        return "EPERM"
    return "sent"


def _sleep_call(box: Any, got: dict[str, BaseException]) -> None:
    try:
        box.execute(time.sleep, 60)
    except BaseException as exc:  # noqa: BLE001 - the test looks at it
        got["error"] = exc


def _box() -> Any:
    return OSSandbox(create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE))


@x86_64
@needs_userns
@pytest.mark.namespace
def test_init_is_the_tiny_program_with_cap_kill_only() -> None:
    with _box() as box:
        assert box.execute(os.getpid) == 2
        root = box.session.worker.root_pid
        st = _status(root)
        assert st["Name"] == "glsandbox-init"
        assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == 1 << tiny_init.CAP_KILL
        assert int(st["CapBnd"], 16) != 0  # (the bounding set is the worker's to drop)
        assert _pss_kib(root) < 64  # one page of stack, a share of the program's page
        # The worker cannot kill its init (another uid, no capability; and SIGKILL from inside
        # a pid namespace never reaches its init anyway).
        assert box.execute(_kill_init) in ("EPERM", "sent")
        assert box.execute(os.getppid) == 1
        assert _status(root)["State"].startswith("S")


@x86_64
@needs_userns
@pytest.mark.namespace
def test_tiny_init_hands_over_the_worker_exit_and_forwards_signals() -> None:
    with _box() as box:
        box.execute(os.getpid)
        worker = box.session.worker
        with pytest.raises(SandboxCrashedError) as crashed:
            box.execute(os._exit, 7)
        assert crashed.value.returncode == 7  # the worker's own code, through the init and the template
    with _box() as box:
        box.execute(os.getpid)
        worker = box.session.worker
        # SIGINT to the init reaches the running call (the worker's handler), the init lives on.
        got: dict[str, BaseException] = {}
        call = threading.Thread(target=_sleep_call, args=(box, got))
        call.start()
        for _ in range(300):  # until the call is running and interrupted
            os.kill(worker.root_pid, signal.SIGINT)
            call.join(0.1)
            if not call.is_alive():
                break
        assert isinstance(got.get("error"), SandboxRemoteError) and "KeyboardInterrupt" in str(got["error"])
        assert worker.poll() is None and box.execute(os.getpid) == 2
        os.kill(worker.root_pid, signal.SIGTERM)  # to the init: passed on to the worker
        assert worker.wait(10) == -signal.SIGTERM


def test_an_init_that_cannot_exec_the_program_goes_on_with_its_status_pipe(tmp_path: Path) -> None:
    """Where the program cannot run (here: its fd is a plain file without exec permission),
    :func:`tiny_init.exec_child` returns with the status pipe back where it was."""
    plain = tmp_path / "not-a-program"
    plain.write_bytes(b"")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the would-be init
        try:
            tiny_init.exe_fd = os.open(plain, os.O_RDONLY)
            tiny_init.exec_child(w)
            os.write(w, b"back")
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 4) == b"back"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
