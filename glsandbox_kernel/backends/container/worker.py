"""One worker in one container, host view (host side).

:class:`ContainerWorker` is the Popen-like handle the session holds:
liveness and exit status from pidfds where the kernel has them (else the
Docker API), signals to host pids under runc (else through the API),
figures from the container's cgroup read from outside (else the stats
API), and the seccomp supervisor answering the worker's escape-class
syscalls when the bootstrap's listener reached the host. Created by
:func:`.launch.launch_worker`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from ...confinement import cgroups
from ..base import ExitInfo, ResourceSample, WorkerProcess
from ..violations import ViolationRelay
from . import docker_api, lifetime
from .pidfds import dup, open_pidfd, pidfd_exit_code, readable
from .settings import LABEL_SESSION, RUNSC, seccomp_of

log = logging.getLogger("glsandbox.container")


def returncode_of(status: int) -> int:
    """Docker's exit status to Popen's convention (128+N from docker-init -> -N)."""
    if 128 < status <= 128 + 64:
        return -(status - 128)
    return status


class ContainerWorker(WorkerProcess, ViolationRelay):
    """A worker running in one container; created by :func:`launch_worker`.

    ``pid`` is the worker's host pid (from SO_PEERCRED); ``init_pid`` is the
    container's init (docker-init), whose death ends the container. With a
    host-visible runtime (runc) signals go straight to those pids; otherwise
    (runsc) through the Docker API.
    """

    def __init__(
        self,
        *,
        container_id: str,
        sock: socket.socket,
        worker_pid: int | None,
        init_pid: int | None,
        image: str,
        runtime: str | None,
        backend: str,
        settings: dict[str, Any],
        proxy: Any = None,
        proxy_dir: str | None = None,
    ) -> None:
        self.container_id = container_id
        self.sock = sock
        self.pid = worker_pid or init_pid or 0
        self.init_pid = init_pid
        self.image = image
        self.runtime = runtime
        self.backend = backend
        self.settings = settings
        self.session_id: str | None = settings.get("labels", {}).get(LABEL_SESSION)
        self.pooled = False
        self.created_at = time.monotonic()
        self._host_signals = runtime is None and worker_pid is not None
        self._pidfd = open_pidfd(init_pid)
        self._worker_pidfd = open_pidfd(worker_pid) if worker_pid != init_pid else None
        self._cgroup = cgroups.from_pid(init_pid) if init_pid else None
        self._returncode: int | None = None
        self._last_sample: ResourceSample | None = None
        self.owner_pid = os.getpid()
        self._oom = False
        self._killed = False
        self._cleaned = False
        self._death_seen = False
        self._lock = threading.Lock()
        #: Guards the pidfds: :meth:`wait` takes its own copies, :meth:`cleanup` closes ours.
        self._fd_lock = threading.Lock()
        #: The bootstrap's seccomp section: what the host asked the sandbox to load.
        self.seccomp = seccomp_of(settings)
        self.init_violations()
        self.reports: Any = None
        #: The host's network proxy (trusted byte counts, refusals as violations) and its directory.
        self.proxy = proxy
        self.proxy_dir = proxy_dir
        if proxy is not None:
            proxy.on_violation = self._violation

    # -- trusted detection: the supervisor (runc), the proxy; untrusted: the reports (gVisor)
    def read_reports(self, conn: socket.socket) -> None:
        """Record what the sandbox reports of itself (``trusted: False``; see :mod:`.reports`)."""
        from .reports import ReportReader

        self.reports = ReportReader(conn, self._violation)

    def _violation(self, record: dict[str, Any]) -> None:
        """Supervisor/proxy/report thread: name the container, then route it (see ViolationRelay)."""
        record.setdefault("container_id", self.container_id[:12])
        super()._violation(record)

    def _cgroup_sample(self) -> ResourceSample | None:
        """The container's cgroup, read from outside (read-only: we do not own it); None once gone."""
        if self._cgroup is None:
            return None
        raw = self._cgroup.sample()
        return None if raw is None else ResourceSample(**raw)

    # -- Popen-like ----------------------------------------------------------
    def _api(self) -> Any:
        return docker_api.api()

    def _alive_fast(self) -> bool | None:
        """True/False from the init pidfd, None when we have no pidfd (none, or cleanup closed it)."""
        fd = self._pidfd
        if fd is None:
            return None
        try:
            return not readable([fd], 0)
        except OSError:
            return None

    def _snapshot_at_worker_death(self) -> None:
        """Read the cgroup once the worker process itself has died (runc).

        The worker dies before docker-init does, and the cgroup (peak, OOM
        counter) is deleted soon after docker-init: reading it at the
        worker's death keeps an OOM kill's peak. No-op without a worker pidfd
        (gVisor: the sentry is the container's init).
        """
        fd = self._worker_pidfd
        if self._death_seen or fd is None or self._cgroup is None:
            return
        try:
            if readable([fd], 0):
                self._snapshot_now()
        except OSError:
            return

    def _snapshot_now(self) -> None:
        """The worker process has died: keep the cgroup's last figures and OOM flag."""
        self._death_seen = True
        seen = self._cgroup_sample()
        if seen is not None:
            self._last_sample = seen
            self._oom = self._oom or bool(seen.oom_killed)

    def poll(self) -> int | None:
        if self._returncode is not None:
            return self._returncode
        self._snapshot_at_worker_death()
        alive = self._alive_fast()
        if alive is None:
            try:
                state = self._api().inspect_container(self.container_id)["State"]
            except Exception:  # noqa: BLE001 - container gone: treat as ended
                with self._lock:
                    if self._returncode is None:
                        self._returncode = -signal.SIGKILL if self._killed else -1
                return self._returncode
            alive = bool(state.get("Running"))
        if alive:
            return None
        self._finish()
        return self._returncode

    def _finish(self) -> None:
        """Record the exit status and OOM flag (death path only).

        From the kernel (pidfd exit info, cgroup OOM counter) where it has
        them, else from the daemon (``docker wait`` + inspect, ~50 ms later).
        """
        with self._lock:
            if self._returncode is not None:
                return
            if self._killed and not self._oom:
                # We sent the SIGKILL: no need to ask the daemon how it ended.
                self._returncode = -signal.SIGKILL
                return
            # The cgroup outlives the worker until the runtime deletes it:
            # read it first (the peak and OOM counter at death). Under gVisor
            # the sentry is the init whose death we noticed, so this races
            # with `runsc delete`, but is usually first.
            seen = self._cgroup_sample() if self._cgroup is not None else None
            if seen is not None:
                self._last_sample = seen
                self._oom = self._oom or bool(seen.oom_killed)
            code = pidfd_exit_code(self._worker_pidfd)
            if code is not None:
                # Straight from the kernel (no daemon round trip); OOM from the cgroup.
                if seen is not None:
                    self._returncode = code
                    return
                if code != -signal.SIGKILL:
                    self._returncode = code
                    return
            status: int | None = None
            try:
                api = self._api()
                status = int(api.wait(self.container_id, timeout=10).get("StatusCode", -1))
                if status != 0:
                    state = api.inspect_container(self.container_id)["State"]
                    self._oom = self._oom or bool(state.get("OOMKilled"))
            except Exception as exc:  # noqa: BLE001 - daemon trouble: keep what we know
                log.debug("exit status of %s unavailable: %s", self.container_id[:12], exc)
            if status is None or status < 0:
                self._returncode = -signal.SIGKILL if self._killed else -1
            else:
                self._returncode = returncode_of(status)

    def wait(self, timeout: float | None = None) -> int | None:
        """Popen.wait: the exit status, or None if still running after ``timeout``.

        Well-defined at any time: after :meth:`cleanup` (which closed the
        pidfds, and only once the exit status was known) it returns that
        status; a wait in another thread while cleanup runs waits on its own
        copies of the pidfds, never on a closed (or reused) descriptor.
        """
        if self._returncode is not None:
            return self._returncode
        with self._fd_lock:
            fd = dup(self._pidfd)
            # the worker's own pidfd too, to snapshot the cgroup at its death
            wfd = dup(self._worker_pidfd) if not self._death_seen and self._cgroup is not None else None
        if fd is None:
            return self._wait_polling(timeout)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    ready = readable([fd] if wfd is None else [fd, wfd], left)
                except OSError:
                    return self.poll()
                if fd in ready:
                    return self.poll()
                if not ready or wfd is None:
                    return None
                self._snapshot_now()  # the worker died before the init: never wait on it again
                os.close(wfd)
                wfd = None
        finally:
            for own in (fd, wfd):
                if own is not None:
                    os.close(own)

    def _wait_polling(self, timeout: float | None) -> int | None:
        """Without a pidfd: poll (the Docker API) every 50 ms."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = self.poll()
            if rc is not None:
                return rc
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def send_signal(self, signum: int) -> None:
        if self.poll() is not None:
            return
        if self._host_signals:
            try:
                os.kill(self.pid, signum)
                return
            except ProcessLookupError:
                return
            except PermissionError:
                pass
        with contextlib.suppress(Exception):
            self._api().kill(self.container_id, signal=int(signum))

    def kill(self) -> None:
        """SIGKILL the container's init (the whole pid namespace dies with it)."""
        if self.poll() is not None:
            return
        self._killed = True
        if self._cgroup is not None:
            before = self._cgroup_sample()
            if before is not None:
                self._last_sample = before
                self._oom = self._oom or bool(before.oom_killed)
        sent = False
        if self._host_signals and self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                sent = True
            except ProcessLookupError:
                sent = True
            except PermissionError:
                pass
        if not sent:
            with contextlib.suppress(Exception):
                self._api().kill(self.container_id)
        if self.wait(10.0) is None:
            # The daemon did not stop it: remove it synchronously, by force.
            docker_api.remove_now(self.container_id)
            self._returncode = -signal.SIGKILL

    def retire(self, grace: float = 0.5) -> None:
        """Session.close, after "shutdown": the container's exit, kill and cleanup go to the removal reaper.

        The worker answers "shutdown" with its exit; waiting for the container
        to end (runc: docker-init after the worker, ~25 ms; runsc: the sentry's
        teardown, ~120 ms measured) is off the caller's path, like the removal
        after it. The reaper kills what has not ended within ``grace`` and is
        flushed at interpreter exit (:func:`.lifetime.shutdown_all`).
        """
        lifetime.retire_later(self, grace)

    def cleanup(self) -> None:
        """Close our ends and queue the container's removal (idempotent)."""
        with self._lock:
            if self._cleaned:
                return
            self._cleaned = True
        if self.poll() is None:
            self.kill()
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._fd_lock:  # the exit status is known by now: a wait() after this returns it
            fds, self._pidfd, self._worker_pidfd = (self._pidfd, self._worker_pidfd), None, None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._cgroup is not None:
            self._cgroup.close()
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.reports is not None:
            self.reports.stop()
        if self.proxy is not None:
            lifetime.release_proxy(self.proxy, self.proxy_dir)
        lifetime.release(self.container_id)

    # -- facts ----------------------------------------------------------------
    def exit_info(self) -> ExitInfo:
        rc = self.poll()
        return ExitInfo(rc, "oom" if self._oom else None)

    def sample(self) -> ResourceSample:
        """The container's figures plus the proxy's trusted byte counts (when it has network)."""
        s = self._resource_sample()
        if self.proxy is not None:
            net = self.proxy.stats()
            s.network_bytes_sent = net["bytes_sent"]
            s.network_bytes_received = net["bytes_received"]
        return s

    def _resource_sample(self) -> ResourceSample:
        """cgroup files read from the host; the stats API where they are not visible.

        After the container is gone: the last reading (taken at the latest
        when the worker's death was noticed, so an OOM kill keeps its peak).
        """
        if self._cgroup is not None:
            s = self._cgroup_sample()
            if s is not None:
                if s.oom_killed:
                    self._oom = True
                self._last_sample = s
                return s
            if self._last_sample is not None:
                last = dataclasses.replace(self._last_sample, oom_killed=self._oom)
                last.source += " (at exit)"
                return last
            return ResourceSample(oom_killed=self._oom or None, source=f"cgroup-v{self._cgroup.version}")
        return self._stats_sample()

    def _stats_sample(self) -> ResourceSample:
        try:
            st = self._api().stats(self.container_id, stream=False, one_shot=True)
        except Exception:  # noqa: BLE001 - gone or unsupported: nothing measured
            return ResourceSample(source="docker-stats")
        mem = st.get("memory_stats") or {}
        cpu = ((st.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
        return ResourceSample(
            cpu_time=None if cpu is None else cpu / 1e9,
            memory_current=mem.get("usage"),
            memory_peak=mem.get("max_usage"),
            pids=(st.get("pids_stats") or {}).get("current"),
            source="docker-stats",
        )

    def reset_peak(self) -> None:
        if self._cgroup is not None:
            self._cgroup.reset_peak()

    def host_pids(self) -> list[int]:
        if self.poll() is not None:
            return []
        if self._cgroup is not None:
            pids = self._cgroup.procs()
            if pids:
                return pids
        return [p for p in (self.init_pid, self.pid) if p]

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "backend": self.backend,
            "container_id": self.container_id[:12],
            "engine": docker_api.engine(),
            "image": self.image,
            "runtime": self.runtime or "runc",
            "pooled": self.pooled,
            "network": (
                f"proxy {self.proxy.mode}: {', '.join(self.proxy.allowed_hosts) or 'any host but metadata'}"
                if self.proxy is not None
                else "none"
            ),
            "read_only_root": bool(s.get("read_only")),
            "cap_drop": s.get("cap_drop"),
            "no_new_privileges": True,
            "seccomp": "glsandbox: allow by default, EPERM for escape-class syscalls"
            + (" (enforced by gVisor's sentry)" if self.runtime == RUNSC else ""),
            "escape_detection": "supervisor (trusted)"
            if self.supervisor is not None
            else str(self.seccomp.get("detection") or "none"),
            "kernel": "gVisor (user-space kernel)" if self.runtime == RUNSC else "host",
            "user": s.get("user"),
            "memory_limit": s.get("mem_limit"),
            "nano_cpus": s.get("nano_cpus"),
            "pids_limit": s.get("pids_limit"),
            "process_limit": _process_limit(s, self.runtime),
            "tmpfs": s.get("tmpfs"),
            "cgroup": f"v{self._cgroup.version}" if self._cgroup else None,
            "metrics_source": f"cgroup-v{self._cgroup.version}" if self._cgroup else "docker-stats",
            "execve_denied": bool(self.seccomp.get("deny_exec")),
        }


def _process_limit(settings: dict[str, Any], runtime: str | None) -> str | None:
    """How ``max_processes`` is enforced for these settings (describe())."""
    pids = settings.get("pids_limit")
    if runtime == RUNSC:
        nproc = next((u["soft"] for u in settings.get("ulimits", []) if u["name"] == "nproc"), None)
        if nproc is None:
            return None
        return f"RLIMIT_NPROC {nproc} in gVisor's kernel; host pids cgroup {pids} (backstop for the sentry)"
    return None if pids is None else f"pids cgroup {pids}"
