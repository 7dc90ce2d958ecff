"""Outside review: masked names are masked only if they existed when the sandbox started.

Attack: the sandbox is persistent (a kernel session lives for hours). The
masks over secrets in the project folder (``.env``, ``.ssh``, ``*.pem``,
``.git`` ...) are made once, at start: NAMESPACE binds ``/dev/null`` or an
empty tmpfs over the entries present then, BASIC grants Landlock rules for
what it saw, CONTAINER decides "not shown if it holds a masked name" then.
A secret the user creates afterwards (``git init``, writing ``.env``,
``ssh-keygen -f .ssh/id_rsa``, a tool dropping ``credentials.pem``) is read
by the still-running sandbox. Measured here at MODERATE (project read-only)
on all three: before, ENOENT; after the host wrote the files, the sandbox
read ``AWS_SECRET=...`` and the private key.

Judged from the host: the secret files this test creates after the start
stay unreadable to the running sandbox.

Fix (suggested): ``project.py`` / ``confinement/mounts.py`` / ``landlock.py``
/ ``backends/container``: never show a writable-by-host folder wholesale;
show the folder as its entries at start (new entries invisible, as BASIC's
one-by-one rules do for folders that held a secret), or watch the folder
(inotify/fanotify) and end or re-mask the sandbox when a masked name
appears; at least say so in the README's "Masked names".
"""

from __future__ import annotations

import os
import sys
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _backend(name: str) -> Any:
    ok, why = backends()[name].available()
    return pytest.param(name, marks=() if ok else pytest.mark.skip(reason=f"{name}: {why}"))


#: where each backend shows the project folder (None: at its own path)
SHOWN_AT = {"namespace": None, "basic": None, "container": "/work/project"}


def attack_read(paths: list[str]) -> dict[str, Any]:
    """SANDBOX side: the text of each path, or the errno."""
    out: dict[str, Any] = {}
    for p in paths:
        try:
            with open(p) as fh:
                out[p] = fh.read()
        except OSError as exc:
            out[p] = exc.errno
    return out


@pytest.mark.xfail(
    strict=True,
    reason="known limit, documented in the README (Your project folder): masks are applied when the sandbox "
    "starts; a secret file created in a shown folder while it runs is visible until the sandbox restarts",
)
@pytest.mark.parametrize("backend", [_backend("namespace"), _backend("basic"), _backend("container")])
def test_secrets_created_after_the_start_stay_masked(backend: str, tmp_path: Any) -> None:
    project = tmp_path / "project"
    project.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(project, 0o755)
    (project / "data.csv").write_text("a,b\n1,2\n")
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType(backend), filesystem=fs)
    base = SHOWN_AT[backend] or str(project)
    inside = [f"{base}/.env", f"{base}/.ssh/id_rsa", f"{base}/data.csv"]
    with OSSandbox(cfg) as sb:
        before = sb.execute(attack_read, inside)
        assert before[inside[2]] == "a,b\n1,2\n", before  # the project is shown
        (project / ".env").write_text("AWS_SECRET_ACCESS_KEY=late-fake-secret\n")
        (project / ".ssh").mkdir()
        (project / ".ssh" / "id_rsa").write_text("-----BEGIN FAKE PRIVATE KEY-----\n")
        after = sb.execute(attack_read, inside)
    leaked = {p: v for p, v in after.items() if p != inside[2] and isinstance(v, str)}
    assert not leaked, f"{backend}: secrets created after the start were read by the sandbox: {leaked}"
