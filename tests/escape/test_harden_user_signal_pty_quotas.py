"""Harden: a sandbox could use up per-user and machine-wide budgets the host shares (signals, ptys).

Queued signals are counted per *user* (ucounts); a user namespace's count is
charged to its creator's too, and each ``sigqueue(2)`` is checked against the
receiver's own RLIMIT_SIGPENDING. Measured from the host with the host's
limit (96 362) in the sandbox: a STRICT sandbox's child queued 96 361
real-time signals to itself, and then a host process's ``sigqueue`` failed
with EAGAIN: BASIC (the host's uid), NAMESPACE (charged to the user
namespace's creator, the host's user); CONTAINER queued 96 362 on uid 65534,
every container sandbox's uid. Ptys: every devpts instance counts in the
machine-wide ``kernel.pty.nr`` (``kernel.pty.max``, 4096 here): NAMESPACE
(its private devpts) held 120 at STRICT and 150 at MODERATE, bounded only by
its open-file limit; CONTAINER (Docker's devpts) the same; BASIC none
(Landlock grants no /dev/ptmx). gVisor: its signals and ptys are the sentry's
own (the host's budgets untouched at any limit).

Expected, judged from the host: while a sandbox holds all the signals it can
queue, a host process (of the host's user and of uid 65534) can still queue
one; while it holds all the ptys it can open, the host's ``kernel.pty.nr`` grew
by at most :data:`~glsandbox_kernel.confinement.mounts.PTYS_MAX` (none at
STRICT, which runs no programs; CONTAINER runs ``!cmd`` on pipes: none).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.confinement.mounts import PTYS_MAX

from .test_outside5_common import need

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(300)]

BACKENDS = ["basic", "namespace", "container", "gvisor"]

#: HOST side: queue one blocked real-time signal to this process; prints "ok" or the errno.
HOST_SIGQUEUE = r"""
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
print("ok" if libc.sigqueue(os.getpid(), signal.SIGRTMIN, 0) == 0 else "errno %d" % ctypes.get_errno())
"""


def _host_sigqueue(uid: int | None) -> str:
    """HOST side: whether a host process (of ``uid``; None: this process's) can queue one signal now."""
    python = sys.executable if uid is None else "/usr/bin/python3"  # the venv may be closed to that uid
    ran = subprocess.run(
        [python, "-S", "-c", HOST_SIGQUEUE], user=uid, group=uid, capture_output=True, text=True, cwd="/", timeout=60
    )
    return ran.stdout.strip() or ran.stderr.strip()[-200:]


def flood_signals(n: int) -> str:
    """SANDBOX side: a forked child (single-threaded, the signal blocked) queues up to ``n`` real-time
    signals to itself and keeps them pending until :func:`release_signals`; returns how many it queued."""
    import builtins
    import ctypes
    import os
    import signal

    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
            made = 0
            while made < n and libc.sigqueue(os.getpid(), signal.SIGRTMIN, 0) == 0:
                made += 1
            os.write(w1, str(made).encode())
            os.close(w2)
            os.read(r2, 1)  # until the parent closes its end
        finally:
            os._exit(0)
    os.close(w1)
    os.close(r2)
    builtins._glsandbox_flood = (pid, w2)
    return os.read(r1, 64).decode()


def release_signals() -> None:
    """SANDBOX side: end the child of :func:`flood_signals` (its pending signals go with it)."""
    import builtins
    import os

    pid, fd = builtins._glsandbox_flood
    os.close(fd)
    os.waitpid(pid, 0)


def open_ptys(n: int) -> tuple[int, str | None]:
    """SANDBOX side: open up to ``n`` ptys and keep them open (until :func:`close_ptys`); (count, why it stopped)."""
    import builtins
    import os

    fds: list[int] = []
    why = None
    for _ in range(n):
        try:
            fds.append(os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
        except OSError as exc:
            why = f"{type(exc).__name__}: {exc.strerror}"
            break
    builtins._glsandbox_ptys = fds
    return len(fds), why


def close_ptys() -> None:
    """SANDBOX side: close what :func:`open_ptys` opened."""
    import builtins
    import os

    for fd in builtins._glsandbox_ptys:
        os.close(fd)


def _host_ptys() -> int:
    return int(Path("/proc/sys/kernel/pty/nr").read_text())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_signal_flood_inside_leaves_the_host_users_sigqueue_working(backend: str) -> None:
    need(backend)
    uids: list[int | None] = [None]
    if os.geteuid() == 0 and os.access("/usr/bin/python3", os.X_OK):
        uids.append(65534)  # the containers' uid (and NAMESPACE's as root without a project owner)
    assert all(_host_sigqueue(uid) == "ok" for uid in uids)  # the control, before any sandbox
    cfg = create_config_by_level("strict", isolation_type=IsolationType(backend))
    with OSSandbox(cfg) as sb:
        queued = sb.execute(flood_signals, 500_000)
        host = {uid: _host_sigqueue(uid) for uid in uids}
        sb.execute(release_signals)
    assert all(v == "ok" for v in host.values()), (
        f"while a {backend} sandbox held {queued} queued signals, a host process's sigqueue gave {host} "
        "(uid None: the host's own): the sandbox used up its user's pending-signal budget"
    )


@pytest.mark.parametrize("level", ["strict", "moderate"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ptys_a_sandbox_holds_stay_within_the_bound_on_the_host(backend: str, level: str) -> None:
    need(backend)
    if not Path("/proc/sys/kernel/pty/nr").exists():
        pytest.skip("no kernel.pty.nr here")
    cfg = create_config_by_level(level, isolation_type=IsolationType(backend))
    bound = PTYS_MAX if backend == "namespace" and cfg.new_programs_allowed else 0
    with OSSandbox(cfg) as sb:
        before = _host_ptys()
        opened, why = sb.execute(open_ptys, 100)
        grown = _host_ptys() - before
        sb.execute(close_ptys)
    # Other processes on this machine may open or close ptys meanwhile: the sandbox's own count decides
    # what it held, the host's figure that it was charged no more.
    if backend != "gvisor":  # gVisor's ptys are the sentry's own: none of the host's (150 held, measured)
        assert opened <= bound, f"a {level} {backend} sandbox held {opened} ptys (bound {bound}; stopped by {why})"
    assert grown <= bound, f"the host's kernel.pty.nr grew by {grown} while a {level} {backend} sandbox ran"
