"""Shared fixtures: leak checks against the real process table, and the harness that runs
a command (or a whole test file again) as an unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Set in the pytest process :func:`rerun_as_unprivileged` started (uid 65534).
UNPRIVILEGED = os.environ.get("GLSANDBOX_TEST_UNPRIVILEGED") == "1"
NOBODY = 65534

# Run by `unshare -m` as root, in a private mount namespace (so nothing here is seen
# outside): make an interpreter under /root (mode 0700 on this host) reachable by
# putting a tmpfs on /root that holds only the interpreter's home, give a HOME under
# /root to the user, then drop to uid:gid with no supplementary groups.
_AS_USER = r"""
set -e
uid="$1"; py_home="$2"; shift 2
if [ -n "$py_home" ]; then
    stash=$(mktemp -d)
    mount --bind "$py_home" "$stash"
    mount -t tmpfs -o mode=0755 tmpfs /root
    mkdir -p "$py_home"
    mount --move "$stash" "$py_home"
    rmdir "$stash" 2>/dev/null || true  # the host's /tmp: left there, one empty folder per run
fi
case "$HOME" in /root/?*) mkdir -p "$HOME" && chown "$uid:$uid" "$HOME" ;; esac
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "$@"
"""


def glsandbox_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 400, audit_key: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the ``glsandbox`` command (``python -m glsandbox_kernel.cli``, this interpreter) in the
    checkout, output captured; ``env`` on top of ours, whose $GLSANDBOX_AUDIT_KEY is passed on
    only with ``audit_key`` (most tests name their key)."""
    base = {k: v for k, v in os.environ.items() if audit_key or k != "GLSANDBOX_AUDIT_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "glsandbox_kernel.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
        cwd=ROOT,
    )


def glsandbox_run_cells(
    folder: Path, sources: Sequence[str], *args: str, kernel: str = "glsandbox"
) -> tuple[subprocess.CompletedProcess[str], Path, list[list[str]]]:
    """Write a notebook of ``sources`` for ``kernel`` into ``folder`` and ``glsandbox run`` it (``args`` added):
    ``(the run, the executed notebook, each cell's output texts)``; a notice is a display_data's text."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, str(folder / "nb.ipynb"))
    out = folder.parent / f"{folder.name}.out.ipynb"
    ran = glsandbox_cli("run", str(folder / "nb.ipynb"), *args, "-o", str(out))
    cells = nbformat.read(str(out), 4).cells if out.exists() else []
    texts = [[str(o.get("text") or o.get("data", {}).get("text/plain", "")) for o in c.outputs] for c in cells]
    return ran, out, texts


def assert_first_cell_notice(
    folder: Path, sources: Sequence[str], args: Sequence[str], error: str, notice: str
) -> None:
    """``glsandbox run`` of ``sources`` in ``folder`` fails with ``error``; the first cell shows ``notice``
    (a kernel notice, once), and the executed notebook verifies (the notice is a covered kernel output)."""
    ran, out, shown = glsandbox_run_cells(folder, sources, *args)
    assert error in ran.stdout, ran.stdout + ran.stderr
    assert any(notice in t for t in shown[0]), shown[0]
    assert not any(notice in t for cell in shown[1:] for t in cell)
    verified = glsandbox_cli("audit", "verify", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def assert_exec_notice_until_fixed(argv: Sequence[str], notice: str, fix: Any, wrote: str) -> None:
    """``glsandbox exec ARGV`` prints ``notice`` and its script fails (exit 1); after ``fix()`` it prints
    ``wrote`` and no notice."""
    ran = glsandbox_cli("exec", *argv)
    assert ran.returncode == 1 and notice in ran.stderr, ran.stdout + ran.stderr
    fix()
    ran = glsandbox_cli("exec", *argv)
    assert ran.returncode == 0 and wrote in ran.stdout, ran.stdout + ran.stderr
    assert notice not in ran.stderr


def as_user(argv: Sequence[str], uid: int = NOBODY) -> list[str]:
    """The command that runs ``argv`` as ``uid`` (its gid the same, no groups) with this
    interpreter reachable (see ``_AS_USER``). Skips the calling test where that cannot
    be done here: not root, or util-linux's unshare/setpriv/mount missing."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root to switch to uid {uid}")
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} (util-linux) not installed")
    base = os.path.realpath(sys.base_prefix)
    py_home = "/root/" + base[len("/root/") :].split("/", 1)[0] if base.startswith("/root/") else ""  # /root/.pyenv
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", _AS_USER, "as-user", str(uid), py_home, *argv]


def rerun_as_unprivileged(
    test_file: str, *pytest_args: str, timeout: float, home: str = "/tmp"
) -> subprocess.CompletedProcess[str]:
    """Run ``test_file`` again under pytest as uid 65534 with ``GLSANDBOX_TEST_UNPRIVILEGED=1``
    (:data:`UNPRIVILEGED` there) and print the tail of its output; the caller asserts on it.
    Skips inside that run, and where :func:`as_user` cannot switch users."""
    if UNPRIVILEGED:
        pytest.skip("already running as the unprivileged user")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "GLSANDBOX_TEST_UNPRIVILEGED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    pytest_cmd = [sys.executable, "-m", "pytest", os.path.abspath(test_file), "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        as_user([*pytest_cmd, *pytest_args]), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    print(proc.stdout[-8000:], proc.stderr[-3000:])
    return proc


def live_pids(pids: list[int]) -> list[int]:
    """The pids in ``pids`` that are still running (zombies count as gone)."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            out.append(pid)
    return out


def wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running at the deadline (a bound only,
    generous for a loaded CI host: it returns as soon as they are gone)."""
    deadline = time.monotonic() + timeout
    alive = live_pids(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = live_pids(alive)
    return alive


def wait_removed(paths: list[str], timeout: float = 30.0) -> list[str]:
    """Wait until none of ``paths`` exists (directories and cgroups are removed in the
    background after close); return those still there at the deadline."""
    deadline = time.monotonic() + timeout
    left = [p for p in paths if os.path.exists(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.01)
        left = [p for p in left if os.path.exists(p)]
    return left


def zygote_children() -> list[int]:
    """Processes below this test process's zygote (should be none between tests,
    except idle warm-pool workers, which the pool itself names)."""
    from glsandbox_kernel import zygote

    z = zygote._ZYGOTES.get(sys.executable)
    if z is None or z.proc.poll() is not None:
        return []
    from glsandbox_kernel.backends.zygote_backend import POOLS
    from glsandbox_kernel.procfs import descendants

    POOLS.settle()  # a worker still being made is not pooled yet: wait until it is
    pooled = POOLS.pooled_pids()
    return [p for p in live_pids(descendants(z.proc.pid)) if p not in pooled]


class HostHello(BaseHTTPRequestHandler):
    """Answers every GET with :attr:`body` (tests compare what the sandbox received with it)."""

    body = b"hello from the host loopback\n" * 100

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def host_server() -> Iterator[tuple[int, list[Any]]]:
    """An HTTP server on the host's 127.0.0.1 (the only address tests send traffic to):
    ``(port, accepted)``, the list holding the client address of every connection accepted."""
    accepted: list[Any] = []

    class Server(ThreadingHTTPServer):
        def verify_request(self, request: Any, client_address: Any) -> bool:
            accepted.append(client_address)
            return True

    srv = Server(("127.0.0.1", 0), HostHello)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield int(srv.server_address[1]), accepted
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    """A root directory for CHROOT with mount points only (the system and Python directories
    are bound into it) and an /etc/passwd naming root and nobody."""
    root = tmp_path / "rootfs"
    for d in ("usr", "lib", "lib64", "bin", "sbin", "etc", "tmp", "proc", "dev", "run"):
        (root / d).mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/false\nnobody:x:65534:65534::/:/bin/false\n")
    import glsandbox_kernel
    from glsandbox_kernel.confinement.mounts import python_paths

    for p in [*python_paths(), os.path.dirname(os.path.dirname(glsandbox_kernel.__file__))]:
        (root / p.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return str(root)


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test must leave no sandbox process behind (checked in /proc).

    Idle warm-pool workers are skipped only by asking the pool for their pids.
    """
    yield
    left = wait_gone(zygote_children())
    assert not left, f"sandbox processes left behind: {left}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last: they are the slowest, and the JupyterLab and
    Chromium processes they start should not overlap the timing-sensitive
    confinement tests that fork straight from the pytest process."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
