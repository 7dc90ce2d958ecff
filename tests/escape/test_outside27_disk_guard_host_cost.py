"""Outside review 27: what the host's disk guard costs the host, unbounded by any sandbox limit.

Two findings, one test each:

A. Each deleted file costs the host's disk guard a scan of every path it counts (quadratic).

Severity: medium (host CPU and the kernel's call end, unbounded by any sandbox limit; honest code hits it).

Attack (or an honest ``shutil.rmtree`` of a cache or checkpoint folder): the cell makes N empty files in
``sandbox-output/`` under a disk quota, then a second call unlinks them. Where: ``DiskGuard._one_event``
handles every ``IN_DELETE``/``IN_MOVED_FROM`` with ``[p for p in self._sizes if p == path or
p.startswith(prefix)]``: a walk of all counted paths per event, in the host process's guard thread, under
the guard's lock (``settle()`` at the call's end waits for it). N deletions cost O(N^2): measured on this
host (BASIC, MODERATE, load ~7), 5 000 files: 1.5 s of guard CPU for 0.05 s of the sandbox's; 10 000:
6.5 s for 0.13 s, the call 10 s. ``MAX_ENTRIES`` allows 200 000 paths, about 400x that: tens of
minutes of a host core per ``rm -rf``, charged to no sandbox limit (the guard is the host's).

How judged, from the host: the CPU time of the ``glsandbox-disk-guard`` thread of this (host) process,
read from ``/proc/self/task/<tid>/stat`` across the deleting call; a guard whose cost per event does not
grow with the folder takes well under a second for these deletions.

Suggested fix: keep the counted paths as a tree (folder -> children) or index ``_sizes`` by parent
folder, so a file's deletion is one pop and a folder's is the walk of its own subtree; or, for
``IN_DELETE`` without ``IN_ISDIR``, just pop ``path`` (a file has nothing below it) and scan only for a
folder's ``IN_DELETE|IN_ISDIR``/``IN_MOVED_FROM``.

B. The disk guard hands the sandbox the host user's inotify watch budget.

Severity: medium (host-side denial of service, same class as review 26's inotify instances, which
today's seccomp change closed by denying ``inotify_init`` in every sandbox).

Attack: the cell makes many empty folders in ``sandbox-output/`` under a disk quota (an empty folder
counts one block, 4 KiB on ext4: the default 256 MiB quota admits 65 536 of them, 1 GiB more than this
machine's whole watch budget). Where: ``DiskGuard._walk``
(disk_guard.py) runs ``inotify_add_watch`` on every folder below the roots, in the *host* process, as
the host user; watches count per user against ``fs.inotify.max_user_watches`` (192 530 on this
machine, 8 192 on older kernels), and the guard's only bound is ``MAX_ENTRIES`` = 200 000 entries,
above that limit. So a sandbox can make the host user's every other ``inotify_add_watch`` (JupyterLab's
and an IDE's file watchers, systemd path units as root, ``tail -f``) fail with ENOSPC for as long as the
worker lives, without itself holding one watch. Measured here: 20 000 folders -> the kernel process
holds 20 000+ watches.

How judged, from the host: the ``inotify wd:`` lines of the guard's descriptor in
``/proc/self/fdinfo`` (the watches this host process holds), after the call.

Suggested fix: cap the guard's watches (e.g. min(4096, max_user_watches / 16) per session) and count
what lies past the cap by the periodic walk only (it already does so when ``inotify_add_watch`` fails),
with ``MAX_ENTRIES`` well below ``max_user_watches``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest

from .test_outside27_common import output_sandbox

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(300)]

N = 8000
N_FOLDERS = 20_000
#: Watches one sandbox's guard may take from the host user's budget.
CAP = 4096
#: Guard CPU the deletions may cost: a per-event cost that does not grow with the folder needs ~0.2 s.
BUDGET_S = 1.5


def make(folder: str, n: int) -> int:
    """SANDBOX side: ``n`` empty files."""
    for i in range(n):
        open(f"{folder}/f{i:06d}", "wb").close()
    return n


def remove(folder: str, n: int) -> float:
    """SANDBOX side: unlink them (the CPU it took, for the message only)."""
    import os
    import time

    start = time.process_time()
    for i in range(n):
        os.unlink(f"{folder}/f{i:06d}")
    return time.process_time() - start


def _guard_cpu() -> float:
    """HOST side: CPU seconds of this process's disk-guard thread."""
    for thread in threading.enumerate():
        if thread.name == "glsandbox-disk-guard" and thread.native_id is not None:
            with open(f"/proc/self/task/{thread.native_id}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    raise AssertionError("no disk guard thread runs")


def test_deleting_files_costs_the_guard_no_scan_of_every_counted_path(tmp_path: Path) -> None:
    out, sandbox = output_sandbox(tmp_path, "basic", 256 << 20)
    with sandbox as sb:
        assert sb.execute(make, str(out), N) == N
        time.sleep(1.0)  # the creations' events taken
        before = _guard_cpu()
        start = time.monotonic()
        inside = sb.execute(remove, str(out), N)
        wall = time.monotonic() - start
        used = _guard_cpu() - before
    assert not any(out.iterdir()), "set-up: files left"
    assert used <= BUDGET_S, (
        f"deleting {N} files cost the host's disk guard {used:.2f} s of CPU (the sandbox's own: {inside:.2f} s; "
        f"the call {wall:.1f} s): each IN_DELETE scans every counted path"
    )


def folders(folder: str, n: int) -> int:
    """SANDBOX side: ``n`` empty folders."""
    import os

    for i in range(n):
        os.mkdir(f"{folder}/d{i:06d}")
    return n


def _host_watches() -> int:
    """HOST side: inotify watches this process holds (``inotify wd:`` lines of its fds' fdinfo)."""
    total = 0
    for name in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{name}") as fh:
                total += sum(1 for line in fh if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


def test_a_sandbox_cannot_make_the_host_hold_a_watch_per_folder(tmp_path: Path) -> None:
    out, sandbox = output_sandbox(tmp_path, "basic", 256 << 20)
    before = _host_watches()
    with sandbox as sb:
        assert sb.execute(folders, str(out), N_FOLDERS) == N_FOLDERS
        held = _host_watches() - before
    assert held <= CAP, (
        f"{N_FOLDERS} empty folders made by the sandbox left this host process holding {held} inotify watches of the "
        f"host user's {Path('/proc/sys/fs/inotify/max_user_watches').read_text().strip()}"
    )
