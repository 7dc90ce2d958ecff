"""Start one container and connect its worker (host side).

The transport is a Unix socket listening in a private host directory that
is bind-mounted at ``/run/glsandbox``; the sandbox-side bootstrap connects
to it and the host checks, from its own facts (SO_PEERCRED and the peer's
cgroup), that the caller is the container. Everything is undone on
failure. Who calls: :meth:`.backend.ContainerBackend.start` and the warm pool.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import hosttemp, procfs
from ...exceptions import BackendUnavailableError, SandboxCrashedError, SandboxSecurityError
from ...worker.bootstrap import SETUP_FAILED_EXIT, VERSION_MISMATCH_EXIT
from . import docker_api, images, lifetime
from .bundle import BUILD_TIMEOUT, BUNDLE_PATH, OUT_DIR, builder_command, ensure_bundle
from .pidfds import readable
from .settings import (
    DEPS_DIR,
    SANDBOX_USER,
    SITE_DIR,
    bind_mounts,
    bootstrap_spec,
    create_kwargs,
    host_labels,
    worker_binds,
)
from .watcher import WATCHER
from .worker import ContainerWorker, returncode_of

if TYPE_CHECKING:
    from ...confinement.network import NetworkProxy

CONNECT_TIMEOUT = 30.0


def _peer_pid(conn: socket.socket) -> int | None:
    fmt = "3i"
    try:
        data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(fmt))
    except (OSError, AttributeError):
        return None
    pid = int(struct.unpack(fmt, data)[0])
    return pid or None


def in_container(pid: int, container_id: str) -> bool:
    """Whether host ``pid`` is in the container's cgroup (its path names the container's id)."""
    return any(container_id in path for _h, _c, path in procfs.cgroup_entries(pid) or [])


class _EarlyExit(Exception):
    def __init__(self, status: int, logs: str) -> None:
        super().__init__(status)
        self.status = status
        self.logs = logs


#: When ``_accept`` first asks the daemon whether the container still runs, then how often.
#: Not sooner: an inspect costs the daemon 15-45 ms of CPU while the container
#: starts (two cores shared by all), and a connect arriving during one waits
#: for its answer; the worker connects 0.25-1 s after the start under runc. A
#: container that exits first (wrong python, no seccomp) is told at most this late.
FIRST_CHECK = 1.0
CHECK_EVERY = 0.5


def _accept(listener: socket.socket, api: Any, container_id: str, timeout: float) -> socket.socket:
    """Accept the worker's connection; notice a container that exits first."""
    deadline = time.monotonic() + timeout
    check_every = CHECK_EVERY
    next_check = time.monotonic() + FIRST_CHECK
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise SandboxCrashedError(f"the container worker did not connect within {timeout:g} s")
        wait = max(0.0, min(next_check, deadline) - now)
        if readable([listener.fileno()], wait):  # poll(2): the listener may be numbered past 1023
            conn, _ = listener.accept()
            return conn
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + check_every
            state = api.inspect_container(container_id)["State"]
            if not state.get("Running"):
                status = int(api.wait(container_id, timeout=10).get("StatusCode", -1))
                logs = api.logs(container_id, tail=20).decode("utf-8", "replace")
                raise _EarlyExit(status, logs)


def _sentry_pid(api: Any, container_id: str) -> int | None:
    """The container's host pid from the daemon (under runsc the sentry's); _EarlyExit if it has ended."""
    state = api.inspect_container(container_id)["State"]
    if not state.get("Running"):
        status = int(api.wait(container_id, timeout=10).get("StatusCode", -1))
        raise _EarlyExit(status, api.logs(container_id, tail=20).decode("utf-8", "replace"))
    return int(state.get("Pid") or 0) or None


def _early_exit_error(exc: _EarlyExit, backend: str, image: str) -> Exception:
    """What a container that ended before connecting means for the user."""
    last = exc.logs.strip().splitlines()[-1] if exc.logs.strip() else ""
    if exc.status == VERSION_MISMATCH_EXIT:
        return BackendUnavailableError(backend, f"image {image}: {last or 'wrong python'}", images.image_hint(image))
    if exc.status == SETUP_FAILED_EXIT:
        return BackendUnavailableError(
            backend, f"the sandbox could not load its seccomp filter: {last}", "see `glsandbox doctor`"
        )
    return SandboxCrashedError(
        f"the container worker exited with status {exc.status} before connecting: {exc.logs.strip()[-2000:]}",
        returncode=returncode_of(exc.status),
    )


def _listen(path: str, undo: contextlib.ExitStack) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    undo.callback(listener.close)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(1)
    return listener


def _accept_report(listener: socket.socket, container_id: str, backend: str) -> socket.socket:
    """The bootstrap's report connection (made before the transport's), checked like it."""
    if not readable([listener.fileno()], 5.0):
        raise BackendUnavailableError(backend, "the sandbox did not open its report channel", "see `glsandbox doctor`")
    conn, _ = listener.accept()
    peer = _peer_pid(conn)
    if peer is None or not in_container(peer, container_id):
        conn.close()
        raise SandboxSecurityError("the report socket was connected from outside the container")
    return conn


def _private_listener(undo: contextlib.ExitStack) -> tuple[socket.socket, str, str]:
    """(listening socket, its directory to bind, the outer directory to remove)."""
    outer = hosttemp.private_dir("ctr")
    undo.callback(shutil.rmtree, outer, True)
    sock_dir = os.path.join(outer, "s")
    os.mkdir(sock_dir)
    # Only the container's user needs to reach the socket; the 0700 outer
    # directory keeps every other host user out.
    os.chmod(sock_dir, 0o711)
    return _listen(os.path.join(sock_dir, "sock"), undo), sock_dir, outer


def _proxy_dir(proxy_for: Callable[[str], NetworkProxy], undo: contextlib.ExitStack) -> tuple[str, NetworkProxy]:
    """A private directory with the network proxy's socket in it (kept while the container lives)."""
    proxy_dir = hosttemp.private_dir("net")
    undo.callback(shutil.rmtree, proxy_dir, True)
    os.chmod(proxy_dir, 0o711)  # the container's user reaches the socket (0666), nobody lists it
    proxy = proxy_for(os.path.join(proxy_dir, "proxy"))
    undo.callback(proxy.stop)
    return proxy_dir, proxy


def _has_bundle(settings: dict[str, Any]) -> bool:
    return any(b.get("bind") == BUNDLE_PATH for b in settings.get("volumes", {}).values())


def _ensure_bundle(image: str) -> bool:
    """The image's module bundle (:mod:`.bundle`), built now if missing by a locked-down builder container."""
    binds = worker_binds()

    def run_builder(out: str) -> None:
        api = docker_api.api()
        spec = {
            "python": images.host_python(),
            "deps": [b["bind"] for b in binds.values() if b["bind"].startswith(DEPS_DIR)],
            "site": SITE_DIR,
            "out": f"{OUT_DIR}/bundle",
        }
        host = api.create_host_config(
            mounts=bind_mounts({**binds, out: {"bind": OUT_DIR, "mode": "rw"}}),
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            tmpfs={"/tmp": "rw,nosuid,nodev,noexec,size=16m"},
            mem_limit=512 << 20,
            pids_limit=64,
            init=True,
        )
        command = builder_command(f"{SITE_DIR}/glsandbox_kernel/worker", spec)
        labels = host_labels("bundle", "container")
        cid = api.create_container(
            image,
            command,
            user=SANDBOX_USER,
            network_disabled=True,
            working_dir="/tmp",
            labels=labels,
            host_config=host,
        )["Id"]
        WATCHER.watch(cid)
        try:
            api.start(cid)
            status = int(api.wait(cid, timeout=BUILD_TIMEOUT).get("StatusCode", -1))
            if status != 0:
                tail = api.logs(cid, tail=5).decode("utf-8", "replace").strip()
                raise OSError(f"the builder exited with status {status}: {tail[-500:]}")
        finally:
            lifetime.remove_and_forget(cid)

    return ensure_bundle(image, binds, run_builder)


def launch_worker(
    settings_for: Callable[[str, str | None], dict[str, Any]],
    *,
    backend: str = "container",
    proxy_for: Callable[[str], NetworkProxy] | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> ContainerWorker:
    """Create and start one container and return it connected (host side).

    ``settings_for(socket_dir, proxy_dir)`` returns
    :func:`~.settings.container_settings` for the private directories made
    here; ``proxy_for(path)`` starts the network proxy on ``path`` when the
    config allows any network. Undoes everything on failure.
    """
    api = docker_api.api()
    with contextlib.ExitStack() as undo:
        listener, sock_dir, outer = _private_listener(undo)
        proxy_dir, proxy = _proxy_dir(proxy_for, undo) if proxy_for is not None else (None, None)
        settings = settings_for(sock_dir, proxy_dir)
        if not _has_bundle(settings) and _ensure_bundle(str(settings["image"])):  # there is one now: bind it
            settings = settings_for(sock_dir, proxy_dir)
        reports = (
            _listen(os.path.join(sock_dir, "report"), undo) if bootstrap_spec(settings).get("report_socket") else None
        )
        image = str(settings["image"])
        runtime = settings.get("runtime")
        WATCHER.expect()  # this host's labels: removed even if it is SIGKILLed during the create
        with docker_api.map_docker_errors(backend, "create the container", image=image):
            container_id = api.create_container(**create_kwargs(api, docker_api.for_engine(settings)))["Id"]
        WATCHER.watch(container_id)  # a pipe write: removed even if this process is SIGKILLed from here on
        undo.callback(lifetime.remove_and_forget, container_id)
        try:
            with docker_api.map_docker_errors(backend, "start the container", image=image):
                api.start(container_id)
                # runsc: the container's pid is the sentry's, there once the start returns; asked
                # now, while the sandbox boots its python, not after the worker has connected.
                sentry_pid = _sentry_pid(api, container_id) if runtime is not None else None
                conn = _accept(listener, api, container_id, connect_timeout)
        except _EarlyExit as exc:
            raise _early_exit_error(exc, backend, image) from None
        undo.callback(conn.close)
        worker_pid = _peer_pid(conn)
        init_pid: int | None = None
        # runc: the peer is the worker itself; runsc: the gofer, which connects
        # on the sandboxed worker's behalf (--host-uds). Either way a host
        # process that must be inside our container's cgroup.
        if worker_pid is None or not in_container(worker_pid, container_id):
            raise SandboxSecurityError("the transport socket was connected from outside the container")
        if runtime is None:
            parent = procfs.parent_pid(worker_pid)
            init_pid = parent if parent and in_container(parent, container_id) else worker_pid
        else:
            # The worker has no host pid; the container's is the sentry's.
            worker_pid = None
            init_pid = sentry_pid
        report_conn = _accept_report(reports, container_id, backend) if reports is not None else None
        if report_conn is not None:
            undo.callback(report_conn.close)
        worker = ContainerWorker(
            container_id=container_id,
            sock=conn,
            worker_pid=worker_pid,
            init_pid=init_pid,
            image=image,
            runtime=runtime,
            backend=backend,
            settings=settings,
            proxy=proxy,
            proxy_dir=proxy_dir,
        )
        if report_conn is not None:
            worker.read_reports(report_conn)
        lifetime.track(worker)
        undo.pop_all()
    # The connection is made: nothing else may connect, and nothing stays on disk.
    listener.close()
    shutil.rmtree(outer, ignore_errors=True)
    return worker
