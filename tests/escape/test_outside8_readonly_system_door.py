"""Outside review (9th): a socket inside a named read-only folder under /run reaches the sandbox.

Attack: ``project._needs_scan`` (review 8's "a named masked file or door is
refused everywhere") walks a named ``readonly_paths`` folder for masked names
and doors (sockets, FIFOs, devices) -- except below ``_SYSTEM_TREES``
(``/run``, ``/var/run``, ``/var/lib``, ``/etc`` ...), "which hold no user
secrets". Those are exactly where the doors live: ``/run/user/<uid>/``
(the user's rootless Podman/Docker API socket, D-Bus, ssh-agent, gpg-agent),
``/run/docker/`` (containerd), ``/var/lib/...``. A read-only mount does not stop
``connect()`` on a Unix socket, so an analyst who shows ``/run/user/1000`` (or
any folder under those trees) read-only hands the sandbox a door to a host
process; the rootless engine's API alone is a full escape.

Measured here (root, namespace): a socket served by the host at
``/run/<tmp>/api.sock`` (mode 0777) inside ``readonly_paths=["/run/<tmp>"]``:
the sandboxed cell connected and read the host's reply.

Judged from the host: the host side of the socket never accepts a connection
from the sandbox (the folder is refused, or the socket masked, as one
outside the system trees is).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import threading
import uuid

import pytest

from glsandbox_kernel import OSSandbox, SecurityLevel, create_config_by_level
from glsandbox_kernel.config import IsolationType
from glsandbox_kernel.exceptions import SandboxError

from .test_outside5_common import need

pytestmark = pytest.mark.timeout(180)


def test_a_socket_in_a_named_folder_under_run_is_not_shown() -> None:
    need("namespace")
    if not os.access("/run", os.W_OK):
        pytest.skip("needs a writable /run")
    folder = f"/run/glsandbox-a9-{uuid.uuid4().hex[:8]}"
    os.mkdir(folder, 0o755)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    accepted: list[str] = []
    try:
        path = os.path.join(folder, "api.sock")
        server.bind(path)
        os.chmod(path, 0o777)
        server.listen(1)

        def serve() -> None:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append("connected")
            conn.sendall(b"HOST-API")
            conn.close()

        threading.Thread(target=serve, daemon=True).start()
        cfg = create_config_by_level(
            SecurityLevel.MODERATE, isolation_type=IsolationType.NAMESPACE, fallback_to_basic=False
        )
        cfg = cfg.replace(filesystem=dataclasses.replace(cfg.filesystem, readonly_paths=(folder,)))
        cell = (
            "import socket\ns = socket.socket(socket.AF_UNIX)\n"
            f"try:\n    s.connect({path!r}); print('GOT', s.recv(16))\n"
            "except OSError as e:\n    print('NO', e)\n"
        )
        said = "refused"
        try:
            with OSSandbox(cfg) as sandbox:
                said = str(sandbox.run_cell(cell).outputs)
        except SandboxError as exc:  # refusing the folder is the safe outcome
            said = f"refused: {exc}"
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
    assert not accepted, f"the sandbox connected to a host socket in a named read-only folder under /run: {said}"
