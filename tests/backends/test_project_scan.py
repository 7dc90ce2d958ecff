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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.container.settings import container_settings
from glsandbox_kernel.backends.namespace import NamespaceBackend
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.backends.zygote_backend import POOLS
from glsandbox_kernel.exceptions import SandboxConfigError
from glsandbox_kernel.project import container_masks, is_masked, project_layout

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


@pytest.mark.parametrize("name", [".ssh", ".aws"])
def test_a_folder_whose_own_name_is_masked_is_refused_as_project_or_readonly_path(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    (folder / "keys").mkdir(parents=True)
    (folder / "credentials").write_text(SECRET)
    for fs in (
        FilesystemConfig(project_dir=str(folder), project_access="read"),
        FilesystemConfig(readonly_paths=(str(folder),)),
        FilesystemConfig(readonly_paths=(str(folder / "keys"),)),
    ):
        for backend in (IsolationType.NAMESPACE, IsolationType.CONTAINER):
            cfg = create_config_by_level("moderate", isolation_type=backend, filesystem=fs)
            with pytest.raises(SandboxConfigError, match="matches masked_names"):
                if backend is IsolationType.CONTAINER:
                    container_settings(cfg, session_id="t", socket_dir=str(tmp_path), image="x")
                else:
                    project_layout(cfg)


def test_a_folder_named_like_a_key_file_pattern_is_a_project_like_any_other(tmp_path: Path) -> None:
    """``id_*`` and ``*.key`` mask key files: a folder "id_mapping" or "survey.key" is still a project."""
    for name in ("id_mapping", "survey.key"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "data.csv").write_text("a\n")
        cfg = create_config_by_level(
            "moderate", filesystem=FilesystemConfig(project_dir=str(folder), project_access="read")
        )
        assert project_layout(cfg).project == str(folder)


def test_the_output_folder_is_scanned_on_its_own_and_never_refuses(project: Path) -> None:
    out = project / "sandbox-output"
    out.mkdir()
    (out / ".env").write_text(SECRET)
    (project / "data" / "note.txt").write_text("x")
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.BASIC, filesystem=fs)
    layout = project_layout(cfg)
    assert (str(out / ".env"), "file") in layout.masked
    assert str(out) in layout.writable and any("masked in the output folder" in n for n in layout.notes)
    # CONTAINER shows the project (it holds no secret of the user's) with the output folder hidden.
    assert container_masks(cfg) == ([], "sandbox-output")
    tmpfs = container_settings(cfg, session_id="t", socket_dir=str(project), image="x")["tmpfs"]
    assert "/work/project/sandbox-output" in tmpfs
    (project / ".env").write_text(SECRET)
    assert container_masks(cfg)[0] == [(str(project / ".env"), "file")]


def test_a_notebook_folder_inside_the_venv_and_the_prefixs_credentials_are_masked(tmp_path: Path) -> None:
    prefix = os.path.realpath(sys.prefix)
    if any(prefix == t or prefix.startswith(t + "/") for t in ("/usr", "/opt")):
        pytest.skip(f"the interpreter's prefix {prefix} is a system folder here")
    notebooks = Path(tempfile.mkdtemp(prefix="nb-", dir=prefix))
    pip_conf = Path(prefix) / "pip.conf"
    had_conf = pip_conf.exists()
    try:
        (notebooks / ".env").write_text(SECRET)
        if not had_conf:
            pip_conf.write_text("[global]\nindex-url = https://u:token@example.org/simple\n")
        fs = FilesystemConfig(project_dir=str(notebooks), project_access="read")
        layout = project_layout(create_config_by_level("moderate", filesystem=fs))
        assert (str(notebooks / ".env"), "file") in layout.masked
        assert (str(pip_conf), "file") in layout.masked
    finally:
        shutil.rmtree(notebooks)
        if not had_conf:
            pip_conf.unlink()


def test_container_shows_the_project_with_a_poisoned_output_folder_hidden(project: Path) -> None:
    """A masked name a cell left in ``sandbox-output/`` hides that folder in the container, not the project."""
    ok, why = backends()["container"].available()
    if not ok:
        pytest.skip(f"container: {why}")
    (project / "sandbox-output").mkdir()
    (project / "sandbox-output" / ".env").write_text(SECRET)
    fs = FilesystemConfig(project_dir=str(project), project_access="read")
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.CONTAINER, filesystem=fs)
    inside = ["/work/project/data/f0.csv", "/work/project/sandbox-output/.env"]
    with OSSandbox(cfg) as sb:
        got = sb.execute(attack_read, inside)
    assert got[inside[0]] == "a,b\n"
    assert got[inside[1]] != SECRET


@pytest.fixture
def named_paths(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder with a secret two levels down, and a key file: each to be named as readonly/writable path."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "x.csv").write_text("a,b\n")
    (data / "sub" / ".env").write_text(SECRET)
    key = tmp_path / "keys" / "id_rsa"
    key.parent.mkdir()
    key.write_text(SECRET)
    for p in (tmp_path, data, data / "sub", key.parent):
        os.chmod(p, 0o755)
    os.chmod(key, 0o644)
    return data, key


def _started(backend: IsolationType, fs: FilesystemConfig, paths: list[str]) -> Any:
    """Start a real MODERATE sandbox with ``fs`` and read ``paths`` in it (its answer, or the refusal)."""
    ok, why = backends()[backend.value].available()
    if not ok:
        pytest.skip(f"{backend.value}: {why}")
    cfg = create_config_by_level("moderate", isolation_type=backend, filesystem=fs)
    try:
        with OSSandbox(cfg) as sb:
            return sb.execute(attack_read, paths)
    except SandboxConfigError as exc:
        return exc


@pytest.mark.parametrize("field", ["readonly_paths", "writable_paths"])
def test_a_container_refuses_a_named_folder_holding_a_masked_name(named_paths: tuple[Path, Path], field: str) -> None:
    """CONTAINER binds a named folder whole (no mask inside): one holding ``.env`` is refused, not shown."""
    data, _key = named_paths
    fs = FilesystemConfig(**{field: (str(data),)})
    cfg = create_config_by_level("moderate", isolation_type=IsolationType.CONTAINER, filesystem=fs)
    with pytest.raises(SandboxConfigError, match=r"sub/\.env.*cannot hide"):
        container_settings(cfg, session_id="t", socket_dir=str(data.parent), image="x")
    (data / "sub" / ".env").unlink()  # without the secret the folder is bound as before
    volumes = container_settings(cfg, session_id="t", socket_dir=str(data.parent), image="x")["volumes"]
    assert volumes[str(data)]["bind"] == str(data)


def test_a_container_sandbox_never_reads_a_secret_in_a_named_folder(named_paths: tuple[Path, Path]) -> None:
    data, _key = named_paths
    got = _started(IsolationType.CONTAINER, FilesystemConfig(readonly_paths=(str(data),)), [str(data / "sub/.env")])
    assert isinstance(got, SandboxConfigError), f"the container read {got}"


@pytest.mark.parametrize("backend", [IsolationType.NAMESPACE, IsolationType.CONTAINER])
def test_a_named_file_with_a_masked_name_is_refused(named_paths: tuple[Path, Path], backend: IsolationType) -> None:
    """``id_*`` masks key files in shown folders; the key file named whole is refused just the same."""
    _data, key = named_paths
    got = _started(backend, FilesystemConfig(readonly_paths=(str(key),)), [str(key)])
    assert isinstance(got, SandboxConfigError), f"{backend.value} read {got}"
    assert "masked name" in str(got)


#: A kernel's start as SandboxKernelApp does it (options -> config -> OSSandbox -> start), counting
#: the walks of its implicit project folder (the working directory): ``os.scandir`` of its root.
KERNEL_START = r"""
import os, sys
from traitlets.config import Config
from glsandbox_kernel import OSSandbox
from glsandbox_kernel.kernel.options import config_from_traits
from glsandbox_kernel.kernel.traits import KernelOptions
root = os.path.realpath(os.getcwd())
walks = []
def hook(event, args):
    if event == "os.scandir" and args and isinstance(args[0], str) and args[0] == root:  # (an fd: rmtree's)
        walks.append(event)
sys.addaudithook(hook)
options = KernelOptions(config=Config({"KernelOptions": {"level": "moderate", "isolation": sys.argv[1]}}))
config = config_from_traits(options)
assert config.filesystem.project_dir == root, config.filesystem
with OSSandbox(config) as sb:
    sb.start()
    started = len(walks)
    print(started, sb.execute(os.path.isfile, os.path.join(root, "data", "f0.csv")), flush=True)
"""


@pytest.mark.parametrize("backend", [IsolationType.NAMESPACE, IsolationType.BASIC])
def test_a_kernel_start_walks_its_implicit_project_folder_once(project: Path, backend: IsolationType) -> None:
    ok, why = backends()[backend.value].available()
    if not ok:
        pytest.skip(f"{backend.value}: {why}")
    # As after the folder's first session (the check makes no output folder: the first start walks again).
    (project / "sandbox-output").mkdir()
    out = subprocess.run(
        [sys.executable, "-c", KERNEL_START, backend.value], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    walks, shown = out.stdout.split()
    assert shown == "True", "the sandbox does not see its project folder"
    assert walks == "1", f"{walks} walks of the project folder for one kernel start"
