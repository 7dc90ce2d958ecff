"""One scan of the project folder per sandbox start, shared, deciding what it decided before (real sandboxes).

The start scans once (:func:`glsandbox_kernel.project.project_layout`): the warm
pool's key, the worker started now and the pool's refills share that layout.
What must still hold: every secret present at a start is masked in the sandbox
that start hands out, also when a spare worker was built before the secret
existed, and also inside MODERATE's output folder (walked with the project).
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.namespace import NamespaceBackend
from glsandbox_kernel.backends.zygote_backend import POOLS
from glsandbox_kernel.project import is_masked

from ..escape.test_outside_late_secrets import attack_read  # SANDBOX side: each path's text or errno

SECRET = "AWS_SECRET_ACCESS_KEY=fake-scan-secret\n"


def test_is_masked_matches_fnmatchcase_of_each_pattern() -> None:
    patterns = create_config_by_level("moderate").filesystem.masked_names
    names = [".env", ".env.local", "x.env", ".git", ".gitignore", "a.pem", "pem", "id_rsa", "kid_rsa", "KEY.key"]
    names += ["kernel-1.json", "kernel-.json5", "jupyter_runtime", "notes.txt", "", "\n.env", ".ENV", "a\nb.pem"]
    for name in names:
        assert is_masked(name, patterns) == any(fnmatch.fnmatchcase(name, p) for p in patterns), name
    assert not is_masked(".env", ())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    for i in range(200):
        (folder / "data" / f"f{i}.csv").write_text("a,b\n")
    for p in (tmp_path, folder, folder / "data"):
        os.chmod(p, 0o755)
    return folder


@pytest.mark.skipif(not NamespaceBackend.available()[0], reason="needs Linux namespaces")
def test_a_spare_built_before_a_secret_existed_is_not_handed_out_unmasked(project: Path) -> None:
    POOLS.set_size(None)
    POOLS.drain_all()
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.NAMESPACE, filesystem=fs)
    inside = [str(project / ".env"), str(project / "sandbox-output" / ".env"), str(project / "data" / "f0.csv")]
    try:
        assert POOLS.size() > 0, "the warm pool is off here: this test is about its spares"
        with OSSandbox(cfg) as sb:
            assert sb.execute(attack_read, inside)[inside[2]] == "a,b\n"
        # The spare the first start left in the pool was built from a folder without secrets.
        (project / ".env").write_text(SECRET)
        (project / "sandbox-output" / ".env").write_text(SECRET)  # inside the writable output folder
        with OSSandbox(cfg) as sb:
            seen = sb.execute(attack_read, inside)
        assert seen[inside[2]] == "a,b\n"
        leaked = {p: v for p, v in seen.items() if isinstance(v, str) and "fake-scan-secret" in v}
        assert not leaked, leaked
    finally:
        POOLS.set_size(None)
        POOLS.drain_all()
