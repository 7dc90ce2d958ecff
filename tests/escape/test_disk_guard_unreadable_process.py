"""The disk guard passes over a sandbox process whose fds the host may not read (CI stop 28).

A non-dumpable process of the host's own uid, or a container's process of another uid on a host
that is not root, keeps its ``/proc/<pid>/fd`` from the host. Honest programs do both (the escape
battery's setsid daemon, run as uid 65534, was killed as "uncountable" in CI), so the guard does not
kill for it: those processes' nameless files are a known limit (README, backend table).

Real processes: a target made non-dumpable as uid 65534, read by a reader that is uid 65534 too.
"""

from __future__ import annotations

import ctypes
import os
import signal

import pytest

from glsandbox_kernel import disk_walk

PR_SET_DUMPABLE = 4
NOBODY = 65534


def _drop() -> None:
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def test_a_process_whose_fds_the_host_may_not_read_is_passed_over() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run both processes as uid 65534")
    ready_r, ready_w = os.pipe()
    target = os.fork()
    if target == 0:  # the sandbox's process: non-dumpable, so its /proc/<pid>/fd is root's
        try:
            _drop()
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
            os.write(ready_w, b"r")
            signal.pause()
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    out_r, out_w = os.pipe()
    reader = os.fork()
    if reader == 0:  # the host, not root: the same uid as the target
        code = 0
        try:
            _drop()
            try:
                os.listdir(f"/proc/{target}/fd")
                code = 3  # readable after all: the test would prove nothing
            except PermissionError:
                got = disk_walk.held_files([target], {os.stat("/").st_dev})
                code = 0 if got == {} else 4
        except disk_walk.Uncountable as exc:
            os.write(out_w, str(exc).encode()[:500])
            code = 5
        except BaseException as exc:  # noqa: BLE001 - report whatever else
            os.write(out_w, repr(exc).encode()[:500])
            code = 6
        finally:
            os._exit(code)
    os.close(out_w)
    _, status = os.waitpid(reader, 0)
    said = os.read(out_r, 1000).decode(errors="replace")
    os.kill(target, signal.SIGKILL)
    os.waitpid(target, 0)
    for fd in (ready_r, ready_w, out_r):
        os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    assert code != 3, "set-up: uid 65534 could read a non-dumpable process's fds"
    assert code == 0, f"held_files on an unreadable process: exit {code} {said}"
