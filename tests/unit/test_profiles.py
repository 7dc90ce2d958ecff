"""Confinement profiles: the steps read the backend's typed profile and nothing else.

A third-party backend declares its own profile and gets exactly the steps
it names, with no change to the confinement code: here a sandbox with its
own mount/pid/user namespaces and tmpfs root but the host's network
namespace, whose network can therefore only be denied.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, ClassVar

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends import registry
from glsandbox_kernel.backends.namespace import NamespaceBackend
from glsandbox_kernel.backends.zygote_backend import ZygoteBackend
from glsandbox_kernel.config import SandboxMode
from glsandbox_kernel.confinement import build_child_plan
from glsandbox_kernel.confinement.profile import SANDBOX_GID, SANDBOX_UID, ConfinementProfile
from glsandbox_kernel.exceptions import BackendUnavailableError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

NS_OK, NS_WHY = NamespaceBackend.available()


class SharedNetBackend(ZygoteBackend):
    """A plugin: own mount, pid, user, ipc and uts namespaces on a tmpfs root; the host's network."""

    name: ClassVar[str] = "sharednet"
    isolation_type: ClassVar[IsolationType] = IsolationType.NAMESPACE
    strength: ClassVar[int] = 1
    profile: ClassVar[ConfinementProfile] = ConfinementProfile(
        namespaces=("user", "mount", "pid", "ipc", "uts"),
        root="tmpfs",
        uid=SANDBOX_UID,
        gid=SANDBOX_GID,
        network="deny_only",
        workdir="/tmp/work",
        helper_processes=3,
    )

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return NamespaceBackend.available()


def test_profile_refuses_what_no_step_can_do() -> None:
    with pytest.raises(ValueError, match="mount namespace"):
        ConfinementProfile(root="tmpfs", workdir="/tmp/work")
    with pytest.raises(ValueError, match="network namespace"):
        ConfinementProfile(namespaces=("user", "mount"), network="proxy")
    with pytest.raises(ValueError, match="unknown namespace"):
        ConfinementProfile(namespaces=("time",))
    with pytest.raises(ValueError, match="workdir"):
        ConfinementProfile(namespaces=("mount",), root="tmpfs")


def test_the_plan_follows_the_profile_alone() -> None:
    cfg = create_config_by_level("moderate")
    plan = build_child_plan(cfg, profile=SharedNetBackend.profile, workdir="/tmp/work")
    assert plan.namespaces is not None and plan.namespaces.kinds == ("user", "mount", "pid", "ipc", "uts")
    assert plan.mounts is not None and plan.mounts.mode == "tmpfs_root"
    assert plan.network is None  # no network namespace, no proxy
    assert plan.seccomp is None or plan.seccomp.deny_inet  # so sockets are denied instead
    assert plan.landlock is not None and plan.landlock.deny_tcp
    assert plan.rlimits is not None and plan.rlimits.limits.get("NPROC") == (cfg.limits.max_processes or 0) + 2


def probe() -> dict[str, Any]:
    import os
    import socket

    out: dict[str, Any] = {"cwd": os.getcwd(), "pid": os.getpid(), "uid": os.getuid()}
    for kind in ("net", "mnt", "pid"):
        out[kind] = os.readlink(f"/proc/self/ns/{kind}")
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        out["inet"] = "ok"
    except OSError as exc:
        out["inet"] = exc.errno
    out["shadow"] = os.path.exists("/etc/shadow")  # the host's /etc is not the tmpfs root's
    return out


@pytest.mark.skipif(not NS_OK, reason=f"namespaces unavailable: {NS_WHY}")
@pytest.mark.namespace
def test_a_plugin_profile_gets_exactly_its_steps() -> None:
    registry.set_backend_loader(lambda: {"namespace": SharedNetBackend})
    try:
        cfg = create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE)
        with OSSandbox(cfg.replace(sandbox_mode=SandboxMode.PERMISSIVE)) as box:
            assert box.session.backend_cls is SharedNetBackend
            out = box.execute(probe)
        lenient = create_config_by_level("lenient", isolation_type=IsolationType.NAMESPACE)
        with pytest.raises(BackendUnavailableError, match="allow_network=True"), OSSandbox(lenient) as box:
            box.execute(probe)  # deny-only network: an allowing config is refused
    finally:
        registry.set_backend_loader(None)
    assert out["net"] == os.readlink("/proc/self/ns/net")  # the host's network namespace, as declared
    assert out["mnt"] != os.readlink("/proc/self/ns/mnt") and out["pid"] != os.readlink("/proc/self/ns/pid")
    assert out["pid"] and out["cwd"] == "/tmp/work" and out["uid"] == SANDBOX_UID
    assert out["inet"] == errno.EPERM  # so the network is denied by seccomp
    assert out["shadow"] is False and os.path.exists("/etc/shadow")
