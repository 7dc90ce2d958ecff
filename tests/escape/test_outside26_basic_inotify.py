"""Outside review 26: BASIC watches folders Landlock hides from it (``inotify_add_watch``).

Severity: medium (confidentiality: names and activity of hidden folders; BASIC is the backend of a
root host in a container and of every ``fallback_to_basic``). Landlock governs opening and
changing paths; ``inotify_add_watch`` only asks the kernel's own read permission of the inode
(and ``security_path_notify``, which Landlock does not implement), so BASIC's worker, which keeps
the host's uid, can watch any folder that uid could read: a masked ``.ssh`` in the project, the
user's home outside it, the host's temp folders. Each event carries the name of the entry.
Measured (before the fix, MODERATE, as root): both watches were added and the worker read
``IN_CREATE`` events naming the files the host made in the two hidden folders while it waited
(the host-only folder's names it cannot list; a masked folder in the project stays listable in
BASIC, Landlock's READ_DIR of the project reaching into it, so only its activity was new).

Also shared with the host: inotify instances and watches are counted per user
(``fs.inotify.max_user_instances``, 128 by default) and BASIC's worker is the host's user, so it
could take all of them (the host user's next ``inotify_init`` fails with EMFILE).

Expected: the sandbox learns no name from a folder it cannot open; BASIC's filter denies
``inotify_init``/``inotify_init1``/``inotify_add_watch`` (EPERM). ``fanotify_init`` was already denied.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, create_config_by_level

from .test_outside5_common import folders, need

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.timeout(240)


def watch_hidden(paths: list[str], seconds: float) -> dict[str, object]:
    """SANDBOX side: watch ``paths`` with inotify for ``seconds``; what it could do and the names it read."""
    import ctypes
    import os
    import select
    import struct
    import time

    libc = ctypes.CDLL(None, use_errno=True)
    out: dict[str, object] = {"names": []}
    fd = libc.inotify_init1(os.O_NONBLOCK)
    if fd < 0:
        out["init"] = f"errno {ctypes.get_errno()}"
        return out
    out["init"] = "done"
    for path in paths:
        wd = libc.inotify_add_watch(fd, path.encode(), 0xFFF)  # IN_ALL_EVENTS
        out[path] = "done" if wd >= 0 else f"errno {ctypes.get_errno()}"
    names: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        select.select([fd], [], [], 0.1)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        i = 0
        while i + 16 <= len(data):
            _wd, _mask, _cookie, size = struct.unpack_from("iIII", data, i)
            names.append(data[i + 16 : i + 16 + size].rstrip(b"\0").decode(errors="replace"))
            i += 16 + size
    out["names"] = names
    os.close(fd)
    return out


def listing_fails(path: str) -> bool:
    """SANDBOX side: whether listing ``path`` is refused."""
    import os

    try:
        os.listdir(path)
    except OSError:
        return True
    return False


def test_basic_cannot_watch_hidden_folders(tmp_path: Path) -> None:
    need("basic")
    project, host_only = folders(tmp_path)
    masked = project / ".ssh"  # one of DEFAULT_MASKED_NAMES: hidden inside the visible project
    masked.mkdir()
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    config = create_config_by_level("moderate", isolation_type=IsolationType.BASIC, filesystem=fs)

    def host_activity() -> None:  # HOST side: what a user does in the hidden folders meanwhile
        time.sleep(1.5)
        (masked / "id_ed25519-new").write_text("k")
        (host_only / "salary-2027.xlsx").write_text("s")

    with OSSandbox(config) as sandbox:
        # (a masked folder stays listable in BASIC: Landlock's READ_DIR of the project reaches into it)
        assert sandbox.execute(listing_fails, str(host_only)), "set-up: the host-only folder is not hidden"
        writer = threading.Thread(target=host_activity)
        writer.start()
        try:
            said = sandbox.execute(watch_hidden, [str(masked), str(host_only)], 4.0)
        finally:
            writer.join()
    names = said["names"]
    assert "salary-2027.xlsx" not in names, f"a name learned from a folder the sandbox cannot list: {said}"  # type: ignore[operator]
    assert said["init"] != "done", f"BASIC may create inotify instances (the host user's quota): {said}"
