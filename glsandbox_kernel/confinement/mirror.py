"""The set-up processes' last job (CHILD side): forward signals, wait, end like the worker.

Used by :mod:`.namespaces` for P0, P1 and the init (pid 1 of the sandbox's
pid namespace): each forwards the signals a sandbox is sent to its child,
waits for it (the init also reaps orphans) and ends the way the worker
ended. Runs in a freshly forked, single-threaded process; never returns.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import signal
import struct
from typing import NoReturn

#: The signals a set-up process passes on to its child.
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def unignore_forwarded_signals() -> None:
    """CHILD side, the worker while the forwarded signals are still blocked: undo inherited SIG_IGN.

    A host started as a background job of a non-interactive shell (``cmd &``, as CI
    scripts do) runs with SIGINT and SIGQUIT ignored, and an ignored disposition
    survives fork and exec down to the worker: the interrupt the set-up processes
    forward would then vanish there. The worker gets Python's defaults back
    (SIGINT raises KeyboardInterrupt; the others SIG_DFL); handlers it inherited
    are left alone.
    """
    for sig in FORWARDED_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_IGN:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


def read_exact(fd: int, n: int) -> bytes:
    """CHILD side: read up to ``n`` bytes, stopping early only at EOF."""
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def wait_and_mirror_child(
    child: int,
    *,
    reap_all: bool,
    status_first: int | None = None,
    status_out: int | None = None,
) -> NoReturn:
    """CHILD side (P0/P1/P2): forward signals to ``child``, wait, end like it.

    ``reap_all`` (the init) also reaps orphans. ``status_out`` receives the
    worker's raw wait status (the init cannot kill itself with a signal from
    inside its pid namespace); ``status_first`` (P0) is read before waiting:
    with a status there, P0 ends without waiting for ``child``.
    """
    gc.disable()

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except OSError:
            pass

    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    status: int | None = None
    if status_first is not None:
        raw = read_exact(status_first, 4)
        if len(raw) == 4:
            exit_like_child(struct.unpack("i", raw)[0])
    while True:
        try:
            pid, st = os.waitpid(-1 if reap_all else child, 0)
        except ChildProcessError:
            break
        if pid == child:
            status = st
            break
    if status_out is not None and status is not None:
        try:
            os.write(status_out, struct.pack("i", status))
        except OSError:
            pass
    exit_like_child(status)


def exit_like_child(status: int | None) -> NoReturn:
    """CHILD side: ``_exit`` with the worker's code, or die of its signal."""
    if status is None:
        os._exit(255)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    if os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    os._exit(255)
