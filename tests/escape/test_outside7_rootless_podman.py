"""Outside review (8th): rootless Podman on cgroup v1 is not refused; the start then cries "escape".

Plain use: an analyst without root follows ``scripts/podman-up`` (as an
unprivileged user it starts a rootless ``podman system service`` on
``$XDG_RUNTIME_DIR/podman/podman.sock``) and points ``DOCKER_HOST`` at it.
On a cgroup v1 host a rootless engine cannot set memory, pids or cpu limits
(Podman drops them with a warning), so the backend means to refuse it
(``docker_api.rootless_on_cgroup_v1``, ``ROOTLESS_V1_HINT``). That check
looks for ``name=rootless`` in ``docker info``'s ``SecurityOptions``, which is
Docker's way of saying so; Podman's compatible ``/info`` says
``"Rootless": true`` and lists only ``name=seccomp,profile=default``. So:

Measured here (cgroup v1, Podman 4.3.1, a user ``a8rev`` with a subuid range,
a wheel installed in a fresh venv): ``glsandbox doctor`` prints
``yes  container  Podman 4.3.1, image glsandbox-python:3.11 (python 3.11);
escape detection: seccomp supervisor (trusted)``; every sandbox start then
fails with ``SandboxSecurityError: the transport socket was connected from
outside the container`` (a rootless container on v1 has no cgroup of its own,
so ``launch.in_container`` cannot find the container id in the peer's cgroup
path). The limits are never applied and never refused; what stops the
worker is an accident of the peer check, reported as an attack.

Judged from the host, against a real rootless Podman service (uid 65534 with
a single-uid mapping, private HOME and runtime folder): the container backend
is unavailable and its reason names rootless on cgroup v1.

Fix (suggested): in ``rootless_on_cgroup_v1`` also read ``info.get("Rootless")``
(Podman) besides ``name=rootless`` (Docker); and in ``launch_worker`` tell a
peer check that fails because the container has no cgroup of its own (Podman
``CgroupVersion`` 1 + rootless) apart from a foreign peer.
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
import time
from collections.abc import Iterator

import pytest

from ..conftest import ROOT, as_user

pytestmark = pytest.mark.timeout(300)

PROBE = (
    "from glsandbox_kernel.backends.container import ContainerBackend as B\n"
    "ok, why = B.available()\n"
    "print('OK' if ok else 'NO', why)\n"
)


def _cgroup_v1() -> bool:
    return not os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(path)
        s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
        return b"OK" in s.recv(4096)
    except OSError:
        return False
    finally:
        s.close()


@contextlib.contextmanager
def rootless_podman() -> Iterator[str]:
    """A rootless ``podman system service`` as uid 65534 in a private folder; yields its socket path."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    home = tempfile.mkdtemp(prefix="glsandbox-rootless-podman-")
    os.chown(home, 65534, 65534)
    os.chmod(home, 0o700)
    sock = os.path.join(home, "podman.sock")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "XDG_RUNTIME_DIR": home}
    cmd = as_user(["podman", "system", "service", "--time=0", f"unix://{sock}"])
    # its own process group: rootless Podman re-executes itself inside its user namespace,
    # and the service that answers is then a child the first process does not wait for
    proc = subprocess.Popen(
        cmd, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        for _ in range(300):
            if _answers(sock) or proc.poll() is not None:
                break
            time.sleep(0.1)
        if not _answers(sock):
            proc.kill()
            pytest.skip(f"a rootless Podman service did not start: {proc.communicate()[1][-500:]!r}")
        yield sock
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # the rootless pause process Podman leaves behind (its pid in the runtime folder)
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(home, "libpod", "tmp", "pause.pid")) as fh:
                os.kill(int(fh.read().strip()), signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


def test_rootless_podman_on_cgroup_v1_is_refused() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start the service as another user")
    if not _cgroup_v1():
        pytest.skip("the claim is about cgroup v1 hosts (rootless with delegation may enforce limits on v2)")
    pytest.importorskip("docker")
    with rootless_podman() as sock:
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        env["DOCKER_HOST"] = f"unix://{sock}"
        probe = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    assert probe.returncode == 0, probe.stderr[-2000:]
    verdict = probe.stdout.strip()
    assert verdict.startswith("NO"), f"the container backend accepts rootless Podman on cgroup v1: {verdict}"
    assert "rootless" in verdict and "cgroup v1" in verdict, (
        f"the container backend does not see that this Podman is rootless on cgroup v1 (no limits): {verdict}"
    )
