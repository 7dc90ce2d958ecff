"""Test doubles for users' own tests: an UNCONFINED fake backend (HOST side).

In the spirit of httpx's ``MockTransport``: code that uses
:class:`~glsandbox_kernel.OSSandbox`, the magic or the kernel can be tested
where no sandbox can run (CI without namespaces, macOS), through the real
session, protocol and worker, with the confinement left out::

    from glsandbox_kernel import OSSandbox
    from glsandbox_kernel.testing import fake_backend

    def test_my_pipeline():
        with fake_backend(), OSSandbox() as box:
            assert box.execute(sum, [1, 2]) == 3

:class:`FakeBackend` starts ``python -m glsandbox_kernel.worker`` as a plain
subprocess (own session, scrubbed environment, private working directory)
and confines NOTHING: no namespaces, no seccomp, no Landlock, no limits.
It is never registered under the entry-point group and is selectable only
through :func:`fake_backend`, so production code cannot pick it by name.
Its metrics are measured from outside (/proc) like the real backends'.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from . import procfs
from .backends import registry
from .backends.base import ExitInfo, ResourceSample, SandboxBackend, WorkerProcess
from .config import IsolationType
from .confinement.process import scrubbed_env

__all__ = ["FakeBackend", "FakeWorker", "fake_backend"]


class FakeWorker(WorkerProcess):
    """The host view of a :class:`FakeBackend` worker: a plain subprocess in its own session."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket, workdir: str) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.sock = sock
        self.workdir = workdir
        self._reader = procfs.ProcessReader(proc.pid)
        self._cleaned = False

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signum)

    def host_pids(self) -> list[int]:
        if self.proc.poll() is not None:
            return []
        return [self.proc.pid, *procfs.descendants(self.proc.pid)]

    def kill(self) -> None:
        """SIGKILL the worker's process group (and anything that left it, from /proc), then reap."""
        tree = self.host_pids()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in reversed(tree):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.wait(5.0)

    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        self._reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.proc.poll() is None:
            self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def exit_info(self) -> ExitInfo:
        return ExitInfo(self.proc.poll())

    def sample(self) -> ResourceSample:
        reading = self._reader.read()
        if reading is None:
            return ResourceSample(source="procfs")
        st, peak = reading
        return ResourceSample(cpu_time=st.cpu_seconds, memory_current=st.rss_bytes, memory_peak=peak, source="procfs")

    def reset_peak(self) -> None:
        procfs.clear_refs(self.proc.pid)

    def describe(self) -> dict[str, Any]:
        return {"confinement": "none: glsandbox_kernel.testing.FakeBackend (tests only)"}


class FakeBackend(SandboxBackend):
    """An unconfined subprocess worker for tests. Install it with :func:`fake_backend`."""

    name: ClassVar[str] = "fake"
    isolation_type: ClassVar[IsolationType] = IsolationType.BASIC
    strength: ClassVar[int] = 0

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if os.name != "posix":
            return False, "needs a POSIX system (socketpair, process groups)"
        return True, "unconfined subprocess worker (testing only: enforces no policy)"

    def start(self, *, session_id: str) -> WorkerProcess:
        """Start ``python -m glsandbox_kernel.worker --fd N`` (not yet connected)."""
        workdir = tempfile.mkdtemp(prefix=f"glsandbox-fake-{session_id[:8]}-")
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = scrubbed_env(self.config, workdir)
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p and os.path.isdir(p))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "glsandbox_kernel.worker", "--fd", str(child_end.fileno())],
                pass_fds=[child_end.fileno()],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            host_end.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            child_end.close()
        return FakeWorker(proc, host_end, workdir)


@contextlib.contextmanager
def fake_backend(isolation: Iterable[IsolationType | str] | None = None) -> Iterator[type[FakeBackend]]:
    """Within the block, every isolation type (or only those named) is served by :class:`FakeBackend`.

    The other registered backends stay reachable when ``isolation`` names
    only some. Restores the entry-point lookup on exit. Not thread-safe:
    the backend lookup is process-wide.
    """
    real = registry.backends()
    names = {i.value if isinstance(i, IsolationType) else str(i) for i in isolation} if isolation else None
    table: dict[str, type[SandboxBackend]] = dict(real) if names is not None else {}
    for kind in IsolationType:
        if names is None or kind.value in names:
            table[kind.value] = FakeBackend
    registry.set_backend_loader(lambda: table)
    try:
        yield FakeBackend
    finally:
        registry.set_backend_loader(None)
