"""The zygote: a pre-imported template process that forks fresh workers.

A fresh sandbox must not pay for a fresh interpreter and fresh imports. The
host starts one template process per interpreter (lazily, shared by every
session of the host process); it imports the worker's code once and then
forks a new child for each spawn request.

Three parties, three sides of the boundary:

- :class:`ZygoteClient` runs in the HOST process (trusted). It sends spawn
  requests (a confinement plan plus the worker's socket end, passed with
  SCM_RIGHTS) and receives ``spawned``/``exited`` notices on a reader thread.
- :func:`template_main` runs in the TEMPLATE process (trusted, unconfined,
  started with a scrubbed environment and not dumpable). It never runs user
  code. When the host goes away (EOF on the control socket) it kills every
  child and exits.
- :func:`_child_main` runs in the FORKED CHILD: it is trusted code until it
  has applied the plan (``confinement.apply_child_plan``), then becomes the
  worker (:func:`glsandbox_kernel.worker.loop.serve`) and runs user code.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .exceptions import SandboxCrashedError, SandboxError
from .linux import PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, PR_SET_PDEATHSIG, prctl
from .procfs import children_of, descendants
from .protocol import FrameChannel, WorkerGone

_ZYGOTE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")
#: HOST side: worker modules the template imports too (set before it starts; the kernel adds
#: its cell shell, so a worker's IPython costs no import). Only ``glsandbox_kernel.worker.*``.
PREIMPORT: list[str] = []
#: Exit code of a forked child whose set-up failed (EX_SOFTWARE); the reason went to the host first.
SETUP_FAILED_EXIT = 70


def _status_to_returncode(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


# ---------------------------------------------------------------------------
# HOST side
# ---------------------------------------------------------------------------


class ZygoteClient:
    """Host-side handle of one template process. Use :func:`get_zygote`.

    Thread-safe: sessions in different threads may spawn concurrently.
    """

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        host_end, tmpl_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {k: os.environ[k] for k in _ZYGOTE_ENV_KEYS if k in os.environ}
        pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = pkg_parent
        if PREIMPORT:
            env["GLSANDBOX_ZYGOTE_PREIMPORT"] = ",".join(PREIMPORT)
        try:
            self.proc = subprocess.Popen(
                [python, "-s", "-m", "glsandbox_kernel.zygote", str(tmpl_end.fileno())],
                pass_fds=[tmpl_end.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
                # "-m" puts the working directory first on sys.path: "/" holds no package, so
                # the host's cwd (a source checkout, /tmp, a project) never shadows this one.
                cwd="/",
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            host_end.close()
            raise SandboxError(f"cannot start the zygote with {python}: {exc}") from exc
        finally:
            tmpl_end.close()
        self.chan = FrameChannel(host_end, max_frame=1 << 20)
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[int]] = {}
        self._exits: dict[int, int] = {}
        self._exit_events: dict[int, threading.Event] = {}
        self._state_lock = threading.Lock()
        self._next_id = 0
        self.alive = True
        self._reader = threading.Thread(target=self._read_loop, name="glsandbox-zygote-reader", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        try:
            while True:
                msg = self.chan.recv()
                if msg is None:
                    continue
                kind = msg.get("type")
                if kind == "spawned":
                    fut = self._pending.pop(int(msg["id"]), None)
                    if fut is not None:
                        if msg.get("error"):
                            fut.set_exception(SandboxError(str(msg["error"])))
                        else:
                            fut.set_result(int(msg["pid"]))
                elif kind == "exited":
                    pid, rc = int(msg["pid"]), int(msg["returncode"])
                    with self._state_lock:
                        self._exits[pid] = rc
                        event = self._exit_events.setdefault(pid, threading.Event())
                    event.set()
        except (WorkerGone, OSError, SandboxError):
            pass
        finally:
            self.alive = False
            for hook in list(_DEATH_HOOKS):
                try:
                    hook(self)
                except Exception:  # noqa: BLE001 - a hook must not keep waiters hanging
                    pass
            for fut in list(self._pending.values()):
                if not fut.done():
                    fut.set_exception(SandboxCrashedError("the zygote process exited"))
            self._pending.clear()
            with self._state_lock:
                for event in self._exit_events.values():
                    event.set()

    def spawn(self, plan: dict[str, Any], worker_sock: socket.socket, timeout: float = 30.0) -> int:
        """Fork a child that applies ``plan`` (``ChildPlan.to_wire()``) and serves on ``worker_sock``.

        Returns the child's pid.

        The pid is the template's direct child: the worker (or, for namespace
        plans, the process that set up the namespaces around it).
        """
        fut: Future[int] = Future()
        with self._send_lock:
            self._next_id += 1
            req_id = self._next_id
            self._pending[req_id] = fut
            try:
                self.chan.send_with_fds({"type": "spawn", "id": req_id, "plan": plan}, [worker_sock.fileno()])
            except OSError as exc:
                self._pending.pop(req_id, None)
                raise SandboxCrashedError(f"the zygote is gone: {exc}") from exc
        pid = fut.result(timeout)
        with self._state_lock:
            self._exit_events.setdefault(pid, threading.Event())
        return pid

    def returncode(self, pid: int) -> int | None:
        """Return code of a child that has ended, else None."""
        with self._state_lock:
            if pid in self._exits:
                return self._exits[pid]
        if not self.alive:
            return -signal.SIGKILL
        return None

    def wait(self, pid: int, timeout: float | None) -> int | None:
        with self._state_lock:
            event = self._exit_events.setdefault(pid, threading.Event())
        event.wait(timeout)
        return self.returncode(pid)

    def forget(self, pid: int) -> None:
        with self._state_lock:
            self._exits.pop(pid, None)
            self._exit_events.pop(pid, None)

    def close(self) -> None:
        """Stop the template (it kills its children first)."""
        try:
            self.chan.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_ZYGOTES: dict[str, ZygoteClient] = {}
_ZYGOTES_LOCK = threading.Lock()
_DEATH_HOOKS: list[Callable[[ZygoteClient], None]] = []


def on_zygote_death(hook: Callable[[ZygoteClient], None]) -> None:
    """HOST side: call ``hook(client)`` (on the client's reader thread) when a template dies.

    Used by :mod:`glsandbox_kernel.backends.zygote_backend` to drain the workers it
    keeps. Hooks must not block.
    """
    if hook not in _DEATH_HOOKS:
        _DEATH_HOOKS.append(hook)


def get_zygote(python: str = sys.executable) -> ZygoteClient:
    """The shared template for ``python``, started on first use (restarted if it died)."""
    with _ZYGOTES_LOCK:
        z = _ZYGOTES.get(python)
        if z is None or not z.alive or z.proc.poll() is not None:
            z = ZygoteClient(python)
            _ZYGOTES[python] = z
        return z


# ---------------------------------------------------------------------------
# TEMPLATE process side (trusted, unconfined, never runs user code)
# ---------------------------------------------------------------------------


def template_main(ctl_fd: int) -> None:
    """Serve spawn requests on ``ctl_fd`` until the host closes it."""
    prctl(PR_SET_DUMPABLE, 0)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    from . import zygote_warm
    from .confinement import idmaps

    zygote_warm.prepare(os.environ.pop("GLSANDBOX_ZYGOTE_PREIMPORT", ""))
    ctl = socket.socket(fileno=ctl_fd)
    chan = FrameChannel(ctl, max_frame=1 << 24)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    warmed = False
    #: Children whose id maps this template writes once they have unshared: up_r -> (pid, plan, down_w).
    maps: dict[int, tuple[int, dict[str, Any], int]] = {}
    #: Children cloned into their namespaces (each the init of its pid namespace): pid -> the
    #: read end of the pipe on which it hands over its worker's wait status.
    statuses: dict[int, int] = {}
    while True:
        try:
            ready, _, _ = select.select([ctl_fd, wake_r, *maps], [], [])
        except InterruptedError:
            continue
        for up_r in [fd for fd in ready if fd in maps]:
            pid, plan, down_w = maps.pop(up_r)
            idmaps.write_maps_from_template(pid, plan, up_r, down_w)
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            _reap(chan, children, statuses)
        if ctl_fd in ready:
            try:
                msg, fds = chan.recv_with_fds(timeout=5.0)
            except (WorkerGone, OSError, SandboxError):
                _kill_all(children)
                os._exit(0)
            if msg is None:
                continue
            if msg.get("type") == "spawn" and len(fds) == 1:
                if not warmed:  # the children's pure set-up code quickened once, shared by all
                    zygote_warm.warm_up(msg["plan"])
                    warmed = True
                # Another child's map pipes are not this child's business: closed in it.
                pending = [fd for up_r, (_, _, down_w) in maps.items() for fd in (up_r, down_w)]
                pid = _spawn(
                    msg["plan"], fds[0], [ctl_fd, wake_r, wake_w, *pending, *statuses.values()], maps, statuses
                )
                os.close(fds[0])
                children.add(pid)
                chan.send({"type": "spawned", "id": msg["id"], "pid": pid})
                _reap(chan, children, statuses)
            else:
                for fd in fds:
                    os.close(fd)
                chan.send({"type": "spawned", "id": msg.get("id", 0), "error": "bad spawn request"})


def _reap(chan: FrameChannel, children: set[int], statuses: dict[int, int]) -> None:
    """TEMPLATE: report every child that ended; a cloned init's report is its worker's status."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in statuses:  # the worker's status, written before its init exited (else the init's own)
            raw = os.read(statuses[pid], 4)
            os.close(statuses.pop(pid))
            status = struct.unpack("i", raw)[0] if len(raw) == 4 else status
        if pid in children:
            children.discard(pid)
            # A reaper died: its orphans were reparented to us. Kill them.
            for orphan in children_of(os.getpid()):
                if orphan not in children:
                    try:
                        os.kill(orphan, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            try:
                chan.send({"type": "exited", "pid": pid, "returncode": _status_to_returncode(status)})
            except OSError:
                pass


def _kill_all(children: set[int]) -> None:
    """TEMPLATE: the host is gone; kill every process below us, deepest first, until none is left.

    As a child subreaper we inherit the orphans of dying trees, so repeat until
    /proc shows no child of ours.
    """
    me = os.getpid()
    for _ in range(100):
        tree = descendants(me)
        if not tree:
            return
        for pid in reversed(tree):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        import time

        time.sleep(0.005)


def _spawn(
    plan: dict[str, Any],
    sock_fd: int,
    close_in_child: list[int],
    maps: dict[int, tuple[int, dict[str, Any], int]],
    statuses: dict[int, int],
) -> int:
    """TEMPLATE: fork one child for ``plan``; returns its pid.

    A plan with a user namespace gets its id maps from this template (see
    :func:`~.confinement.idmaps.maps_by_template`): the child unshares
    itself and the template's loop answers on the pipes kept in ``maps``,
    so no extra process is forked only to write them. With a pid namespace
    too, the child is cloned straight into its namespaces
    (:func:`~.linux.clone_fork`): it is the init, the worker its only child,
    and it hands the worker's wait status over a pipe kept in ``statuses``.
    """
    from .confinement import idmaps, tiny_init
    from .confinement.namespaces import fork_hooks
    from .linux import clone_fork

    template = os.getpid()
    pipes = None
    if idmaps.wants_template_maps(plan):
        up_r, up_w = os.pipe()
        down_r, down_w = os.pipe()
        pipes = (up_r, up_w, down_r, down_w)
    flags = idmaps.clone_flags(plan)
    status_pipe = os.pipe() if flags else None
    try:
        if not fork_hooks or status_pipe:  # a cloned init needs no child hooks: it runs no user code
            pid = clone_fork(flags, reinit_child=False, hooks=fork_hooks)
        else:
            pid = os.fork()
    except OSError:  # e.g. no user namespaces here: a plain fork, whose unshare says why
        for fd in status_pipe or ():
            os.close(fd)
        status_pipe, pid = None, os.fork()
    if pid:
        if pipes is not None:
            os.close(pipes[1])
            os.close(pipes[2])
            maps[pipes[0]] = (pid, plan, pipes[3])
        if status_pipe is not None:
            os.close(status_pipe[1])
            statuses[pid] = status_pipe[0]
        return pid
    # ---- FORKED CHILD from here on; never returns ----
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close_in_child:
            os.close(fd)
        if status_pipe is None:  # the program only a cloned init runs (it closes it in its worker)
            tiny_init.close_child()
        if pipes is not None:
            os.close(pipes[0])
            os.close(pipes[3])
            if status_pipe is not None:  # cloned: this is the init; it returns only in the worker
                from .confinement.namespaces import init_cloned_child

                os.close(status_pipe[0])
                idmaps.cloned_by_template = True
                init_cloned_child(pipes[1], pipes[2], status_pipe[1])
            else:
                idmaps.maps_by_template(pipes[1], pipes[2])
        _child_main(plan, sock_fd, template)
    except BaseException as exc:  # noqa: BLE001 - report and die, never return to the template loop
        try:
            _report_setup_failure(sock_fd, exc)
        finally:
            os._exit(SETUP_FAILED_EXIT)
    os._exit(0)


def _report_setup_failure(sock_fd: int, exc: BaseException) -> None:
    """FORKED CHILD, set-up failed (no user code has run): tell the host, then stderr.

    The host reads a ``setup_failed`` frame where it waits for the hello
    (:meth:`~glsandbox_kernel.backends.base.SandboxBackend.connect`), so the
    message reaches it whatever happened to fd 2. The socket is used through
    a duplicate: the worker's own socket object may already own ``sock_fd``.
    """
    from .exceptions import ConfinementError

    if isinstance(exc, ConfinementError):
        frame = {"type": "setup_failed", "error": str(exc), "step": exc.step, "call": exc.call, "errno": exc.errno}
    else:
        frame = {"type": "setup_failed", "error": f"{type(exc).__name__}: {exc}", "step": "", "call": "", "errno": None}
    try:
        sock = socket.socket(fileno=os.dup(sock_fd))  # owns the duplicate: closed once, here
        try:
            FrameChannel(sock, max_frame=1 << 16).send(frame)
        finally:
            sock.close()
    except BaseException:  # noqa: BLE001 - the host still sees the exit code and stderr
        pass
    os.write(2, f"glsandbox: worker setup failed: {frame['error']}\n".encode(errors="replace"))


def _child_main(plan: dict[str, Any], sock_fd: int, template: int) -> None:
    """FORKED CHILD: own session, die with the template, subreaper, then the worker.

    As a child subreaper the worker keeps even ``setsid`` double-fork daemons
    below it, where the host's kill finds them; if the worker itself dies,
    its orphans fall to the template, which kills them (see :func:`_reap`).
    """
    from .confinement import idmaps

    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The template died before the signal was set: nobody would kill us. (A child cloned into
    # a pid namespace sees no parent: the template's answer on the id-map pipe proves it instead.)
    if not idmaps.cloned_by_template and os.getppid() != template:
        from .exceptions import ConfinementError

        raise ConfinementError("zygote", "prctl(PR_SET_PDEATHSIG, SIGKILL): the template exited first")
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    _worker_main(plan, sock_fd)


def _worker_main(plan: dict[str, Any], sock_fd: int) -> None:
    """WORKER (becomes untrusted): check and apply the plan, then serve frames."""
    from .confinement import ChildPlan, apply_child_plan
    from .worker.loop import serve

    checked = ChildPlan.from_wire(plan)  # unknown, missing or mistyped fields are refused
    result = apply_child_plan(checked)
    # The host's import path as it is now (the template's dates from its start),
    # so functions pickled by reference find their modules.
    for entry in reversed(checked.process.sys_path if checked.process else ()):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    sys.dont_write_bytecode = True  # no __pycache__ in the user's project folder
    from .worker.netpolicy import install_child

    install_child()  # a blocked connection names the sandbox policy
    sock = socket.socket(fileno=sock_fd)
    serve(sock, pass_fds=list(result.pass_fds), report=dict(result.report), file_limit=result.file_limit)


if __name__ == "__main__":
    template_main(int(sys.argv[1]))
