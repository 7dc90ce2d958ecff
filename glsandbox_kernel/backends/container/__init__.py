"""CONTAINER backend package: the worker in a locked-down Docker container (host side).

One concern per module:

========================  ==================================================
:mod:`.settings`          the container's settings and seccomp profile (pure)
:mod:`.images`            which image, whether its python matches, hints
:mod:`.code`              the worker's code as bound: a compiled snapshot
:mod:`.docker_api`        the SDK (lazy), one client, :func:`map_docker_errors`
:mod:`.watcher`           removes our containers if the host is SIGKILLed
:mod:`.lifetime`          reaping, exit hooks, stale sweep
:mod:`.pidfds`            liveness, waiting and exit status through pidfds
:mod:`.worker`            :class:`ContainerWorker`, the session's handle
:mod:`.reports`           the sandbox's own violation reports (gVisor; untrusted)
:mod:`.launch`            create, start and connect one container
:mod:`.warm`              the warm pool of started containers
:mod:`.backend`           :class:`ContainerBackend` (entry point)
========================  ==================================================

The container's cgroup is read from outside through
:func:`glsandbox_kernel.confinement.cgroups.from_pid` (read-only: the
engine owns it). The sandbox side is
:mod:`glsandbox_kernel.worker.bootstrap`, run inside the container by
path. GVISOR is :mod:`glsandbox_kernel.backends.gvisor`.
"""

from __future__ import annotations

from .backend import ContainerBackend as ContainerBackend
from .docker_api import check_available as check_available
from .docker_api import daemon_info as daemon_info
from .docker_api import docker_client as docker_client
from .docker_api import docker_module as docker_module
from .docker_api import map_docker_errors as map_docker_errors
from .docker_api import missing_runtime_args as missing_runtime_args
from .images import default_image as default_image
from .images import host_python as host_python
from .launch import launch_worker as launch_worker
from .lifetime import flush_removals as flush_removals
from .lifetime import shutdown_all as shutdown_all
from .lifetime import sweep_stale as sweep_stale
from .settings import LABEL_HOST_PID as LABEL_HOST_PID
from .settings import RUNSC as RUNSC
from .settings import RUNSC_HOST_TASKS_BASE as RUNSC_HOST_TASKS_BASE
from .settings import RUNSC_HOST_TASKS_PER_TASK as RUNSC_HOST_TASKS_PER_TASK
from .settings import container_settings as container_settings
from .settings import oci_profile as oci_profile
from .settings import package_dir as package_dir
from .settings import seccomp_policy as seccomp_policy
from .worker import ContainerWorker as ContainerWorker

__all__ = [
    "LABEL_HOST_PID",
    "RUNSC",
    "RUNSC_HOST_TASKS_BASE",
    "RUNSC_HOST_TASKS_PER_TASK",
    "ContainerBackend",
    "ContainerWorker",
    "check_available",
    "container_settings",
    "daemon_info",
    "default_image",
    "docker_client",
    "docker_module",
    "flush_removals",
    "host_python",
    "launch_worker",
    "map_docker_errors",
    "missing_runtime_args",
    "oci_profile",
    "package_dir",
    "seccomp_policy",
    "shutdown_all",
    "sweep_stale",
]
