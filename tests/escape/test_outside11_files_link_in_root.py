"""Review 12: ``/files/`` still serves a planted link to a file elsewhere below the server root.

Attack: at LENIENT a sandboxed cell writes its project folder. The server
extension's new guard (notebook/server_links.py, ``guard_contents``) refuses
every contents-API read through a symbolic link below the root, but
``/files/`` (JupyterLab's download, "Open in New Browser Tab", every
``<img src=files/...>``) is jupyter_server's ``AuthenticatedFileHandler``, a
tornado ``StaticFileHandler`` that never calls the contents manager's ``get``
or ``open``. Tornado only refuses a link whose resolved target leaves the
root. The server root is usually the user's home or a folder holding several
projects, so a cell plants ``proj/x.txt -> ../private/tax.txt`` (or a linked
folder ``proj/docs -> ../private``) and the server hands the browser a host
file outside the sandbox's project that the sandbox itself could not read.

Measured (real ``jupyter server`` on 127.0.0.1, both contents managers): the
contents API answers 403 "is a symbolic link a sandboxed cell may have
planted" for both paths; ``/files/`` answers 200 with the host file's text.

Severity: medium (the guard's stated promise, "GET and /files/ of a link ...
not read, nothing sent", holds only for links that leave the root). Judged
from the host: the bytes the server sent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ..jupyter.test_server_read_links import _files
from ..jupyter.test_server_save_links import HOST_TEXT, _call
from ..jupyter.test_server_save_links import server as server  # the real server fixture (both managers)

pytestmark = pytest.mark.timeout(180)


def test_files_does_not_serve_a_link_to_a_file_elsewhere_below_the_root(server: dict[str, Any]) -> None:
    root = Path(server["root"])
    private = root / "o11-private"  # another folder of the server root, outside the sandbox's project
    private.mkdir()
    (private / "tax.txt").write_text(HOST_TEXT)
    proj = root / "o11-proj"
    proj.mkdir()
    os.symlink("../o11-private/tax.txt", proj / "x.txt")  # what the cell plants
    os.symlink("../o11-private", proj / "docs")
    for path in ("o11-proj/x.txt", "o11-proj/docs/tax.txt"):
        status, reply = _call(server, "GET", f"{path}?content=1")
        assert status == 403, (path, status, reply)  # the contents API refuses it (the new guard)
        status, body = _files(server, path)
        assert HOST_TEXT.encode() not in body, (path, status, body[:200])
        assert status == 403, (path, status)
