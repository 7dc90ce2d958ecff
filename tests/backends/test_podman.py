"""The CONTAINER backend on Podman's Docker-compatible API (``podman system service``).

Runs the container suites (tests/backends/test_container.py and
tests/escape/test_container_escape.py, the runc cases: Podman has no runsc
registration with the arguments GVISOR needs) in a child pytest whose
``DOCKER_HOST`` points at the Podman service, so the backend, the probes,
the escape battery, the network allowlist and the leak checks all meet
Podman. The socket: ``GLSANDBOX_PODMAN_HOST``, else the one
``scripts/podman-up`` starts. Skipped, with the reason, when no Podman
service answers there (``GLSANDBOX_REQUIRE_PODMAN=1`` turns that into a
failure) or the backend refuses it (e.g. rootless on cgroup v1).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.container, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _socket_path() -> str:
    host = os.environ.get("GLSANDBOX_PODMAN_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://") :]
    if os.geteuid() == 0:
        return str(REPO / ".cache" / "podman.sock")
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR", f"/tmp/podman-run-{os.geteuid()}"), "podman/podman.sock")


def _podman_problem(path: str) -> str | None:
    """Why Podman's service cannot be used at ``path``, or None."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall(b"GET /version HTTP/1.0\r\nHost: d\r\n\r\n")
        reply = s.recv(65536)
    except OSError as exc:
        return f"no Podman service answers on {path} ({exc}); start one with scripts/podman-up"
    finally:
        s.close()
    if b"Podman" not in reply:
        return f"the service on {path} is not Podman"
    return None


@pytest.mark.timeout(1800)
def test_container_suites_on_podman() -> None:
    path = _socket_path()
    problem = _podman_problem(path)
    if problem is not None:
        if os.environ.get("GLSANDBOX_REQUIRE_PODMAN") == "1":
            pytest.fail(f"GLSANDBOX_REQUIRE_PODMAN=1 but {problem}")
        print(f"\nskipping the Podman run: {problem}", file=sys.stderr)
        pytest.skip(problem)
    env = dict(os.environ, DOCKER_HOST=f"unix://{path}")
    env.pop("GLSANDBOX_REQUIRE_DOCKER", None)  # runsc is not registered with Podman: gvisor cases skip
    probe = subprocess.run(
        [sys.executable, "-c", "from glsandbox_kernel.backends.container import ContainerBackend as B; "
         "ok, why = B.available(); print(why); raise SystemExit(0 if ok else 3)"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if probe.returncode == 3:
        pytest.skip(f"the container backend refuses this Podman: {probe.stdout.strip()}")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith("Podman"), probe.stdout
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "not gvisor",
         "tests/backends/test_container.py", "tests/escape/test_container_escape.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail, tail
