"""The disk guard's work at a call's end: none for a call that wrote nothing, all of it when it may matter.

At each call's end the host settles the guard (:meth:`DiskGuard.settle`) before the call returns. Reading
the fd tables of the sandbox's processes there (``/proc/<pid>/fd``, for the nameless files they hold) at
every call made a warm ``execute(f, 1)`` 1.3x ``Pool(1).apply`` (0.85x before the reading came); it is
done now only when the sandbox may hold a nameless file the last reading did not see. Judged from the
host, with the periodic walk off (``RESCAN_S``), so what is counted is counted at a call's end or by an
event:

1. Warm calls that write nothing read no fd table (before: one reading per call); a call that writes does.
2. A file unlinked while held, whose ``IN_DELETE`` the guard thread took during the call (it reads the fd
   tables after writes only), is counted at the call's end all the same: an event came since the last
   reading.
3. A held nameless file whose folder was removed (its watch with it: writes to it send no event, nor do
   ``mmap`` writes) is read at every call's end: written past the quota in a later call, the call fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import SandboxCrashedError, disk_guard, disk_walk

from .test_outside5_common import need
from .test_outside27_common import output_sandbox
from .test_outside27_disk_guard import _run

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(300)]

MiB = 1 << 20
QUOTA = 8 * MiB


def nothing(x: int) -> int:
    """SANDBOX side: a call that writes nothing."""
    return x


def write_file(path: str, size: int) -> int:
    """SANDBOX side: ``size`` bytes in ``path``, on disk."""
    import os

    with open(path, "wb") as fh:
        fh.write(b"w" * size)
        fh.flush()
        os.fsync(fh.fileno())
    return size


def hold_and_unlink(path: str, wait: float) -> int:
    """SANDBOX side: keep ``path`` open (read only: its close sends no write event), unlink it, then wait
    ``wait`` s in the call (the guard thread takes the ``IN_DELETE`` meanwhile)."""
    import builtins
    import os
    import time

    builtins._glsandbox_held_fd = os.open(path, os.O_RDONLY)  # type: ignore[attr-defined]
    os.unlink(path)
    time.sleep(wait)
    return os.fstat(builtins._glsandbox_held_fd).st_nlink  # type: ignore[attr-defined]


def hold_in_removed_folder(folder: str, tmpfile: bool) -> int:
    """SANDBOX side: an empty nameless file (unlinked, or ``O_TMPFILE``) in ``folder/d``, kept open, and
    ``folder/d`` removed (with it the guard's watch on it)."""
    import builtins
    import os

    os.mkdir(f"{folder}/d")
    if tmpfile:
        fd = os.open(f"{folder}/d", os.O_TMPFILE | os.O_RDWR, 0o600)
    else:
        fd = os.open(f"{folder}/d/f", os.O_RDWR | os.O_CREAT, 0o600)
        os.unlink(f"{folder}/d/f")
    os.rmdir(f"{folder}/d")
    builtins._glsandbox_held_fd = fd  # type: ignore[attr-defined]
    return fd


def fill_held(size: int, chunk: int) -> int:
    """SANDBOX side: ``size`` bytes into the file the last call kept open, on disk."""
    import builtins
    import os

    fd = builtins._glsandbox_held_fd  # type: ignore[attr-defined]
    done = 0
    while done < size:
        done += os.write(fd, b"h" * chunk)
    os.fsync(fd)
    return done


def quiet_readings(backend: str, tmp_path: Path) -> dict[str, Any]:
    """HOST side: the guard's fd-table readings over 20 quiet calls, one writing call, 5 quiet calls (each
    reading still done: the real one runs, counted). Run in a process of its own (see the test)."""
    disk_guard.RESCAN_S = 3600.0  # no periodic walk (it reads the fd tables too)
    calls = [0]
    real = disk_walk.held_files

    def held_files(*args: Any, **kwargs: Any) -> dict[tuple[int, int], int]:
        calls[0] += 1
        return real(*args, **kwargs)

    disk_walk.held_files = held_files  # type: ignore[assignment]
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    with sandbox as sb:
        assert sb.execute(nothing, 1) == 1
        guard = sb._session.monitor.disk
        assert guard is not None
        before = calls[0]
        for i in range(20):
            assert sb.execute(nothing, i) == i
        quiet = calls[0] - before
        assert sb.execute(write_file, str(out / "a.bin"), MiB) == MiB
        after_write = calls[0] - before - quiet
        for i in range(5):
            assert sb.execute(nothing, i) == i
        again = calls[0] - before - quiet - after_write
        held = sorted(str(k) for k in guard._held)
    return {"quiet": quiet, "after_write": after_write, "again": again, "held": held}


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_warm_calls_that_write_nothing_read_no_fd_table(tmp_path: Path, backend: str) -> None:
    # In a process of its own, its stdout and stderr pipes: a sandbox's init inherits the host's fds 1 and 2,
    # which pytest's capture makes unlinked files on /tmp (held nameless files, read at every call's end).
    need(backend)
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.escape.test_disk_guard_call_end", backend, str(tmp_path)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["quiet"] == 0, f"{backend}: 20 warm calls that wrote nothing read the fd tables: {got}"
    assert got["after_write"] >= 1, f"{backend}: a call that wrote 1 MiB was followed by no fd-table reading: {got}"
    assert got["again"] == 0, f"{backend}: quiet calls after a write read the fd tables: {got}"


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_a_file_unlinked_during_a_call_is_counted_at_its_end(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_guard, "RESCAN_S", 3600.0)
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    with sandbox as sb:
        assert sb.execute(write_file, str(out / "a.bin"), 6 * MiB) == 6 * MiB
        assert sb.execute(hold_and_unlink, str(out / "a.bin"), 0.5) == 0
        guard = sb._session.monitor.disk
        assert guard is not None
        counted = guard.used
        more = _run(sb, write_file, str(out / "b.bin"), 4 * MiB)
    assert counted >= 6 * MiB, (
        f"{backend}: 6 MiB held open by an unlinked name, and the call returned with {counted / MiB:.1f} MiB "
        "counted (the guard thread took the unlink's event; the call's end read no fd table)"
    )
    assert isinstance(more, SandboxCrashedError) and more.reason == "disk_quota", (
        f"{backend}: 6 MiB held and 4 MiB more under an 8 MiB quota, and the call returned {more!r}"
    )


@pytest.mark.parametrize("tmpfile", [False, True], ids=["unlinked", "o_tmpfile"])
@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_a_held_file_whose_folder_is_gone_is_counted_at_each_call_end(
    tmp_path: Path, backend: str, tmpfile: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_guard, "RESCAN_S", 3600.0)
    out, sandbox = output_sandbox(tmp_path, backend, QUOTA)
    with sandbox as sb:
        assert sb.execute(hold_in_removed_folder, str(out), tmpfile) >= 0
        assert sb.execute(nothing, 1) == 1  # a quiet call between: nothing new to see, the file still held
        got = _run(sb, fill_held, 12 * MiB, MiB)
    assert isinstance(got, SandboxCrashedError) and got.reason == "disk_quota", (
        f"{backend}: 12 MiB written into a held nameless file whose folder is gone (no event for its writes) "
        f"under an {QUOTA / MiB:.0f} MiB quota, and the call returned {got!r}"
    )


if __name__ == "__main__":  # the first test's own process
    print(json.dumps(quiet_readings(sys.argv[1], Path(sys.argv[2]))))
