"""The backend registry: entry points only, our own backends included; a broken plugin is shown, not dropped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from glsandbox_kernel.backends import registry

GLSANDBOX = [sys.executable, "-m", "glsandbox_kernel.cli"]


def test_our_backends_come_from_the_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {"basic", "namespace", "chroot", "container", "gvisor", "vm"} <= names
    assert set(registry.backends()) <= names
    assert not hasattr(registry, "_BUILTIN")


def test_a_backend_whose_import_fails_is_shown_by_doctor(tmp_path: Path) -> None:
    """A real distribution on the path registers a plugin that raises on import."""
    dist = tmp_path / "glsandbox_broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: glsandbox-broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[glsandbox_kernel.backends]\nbroken = glsandbox_broken_plugin:Backend\nnotabackend = json:dumps\n"
    )
    (tmp_path / "glsandbox_broken_plugin.py").write_text("import a_module_that_does_not_exist_here\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([*GLSANDBOX, "doctor", "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["backends"]
    assert report["broken"]["available"] is False
    assert "ModuleNotFoundError" in report["broken"]["reason"]
    assert "a_module_that_does_not_exist_here" in report["broken"]["reason"]
    assert "not a SandboxBackend" in report["notabackend"]["reason"]
    assert report["basic"]["available"] is True  # the others still load
    text = subprocess.run([*GLSANDBOX, "doctor"], capture_output=True, text=True, timeout=120, env=env)
    assert "broken" in text.stdout and "ModuleNotFoundError" in text.stdout
    # Asking for it names the import error instead of "not registered".
    probe = textwrap.dedent(
        """
        from glsandbox_kernel.backends.registry import get_backend
        from glsandbox_kernel.exceptions import BackendUnavailableError
        try:
            get_backend("broken")
        except BackendUnavailableError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    assert "ModuleNotFoundError" in out.stdout, out.stderr


def test_set_backend_loader_replaces_the_lookup() -> None:
    from glsandbox_kernel.backends.basic import BasicBackend

    registry.set_backend_loader(lambda: {"basic": BasicBackend})
    try:
        assert registry.backends() == {"basic": BasicBackend}
        assert registry.broken_backends() == {}
    finally:
        registry.set_backend_loader(None)
    assert "namespace" in registry.backends()


def test_get_backend_imports_only_the_backend_asked_for() -> None:
    """A kernel's start asks for one backend: the others' modules stay unimported, until all are asked for."""
    probe = textwrap.dedent(
        """
        import sys
        from glsandbox_kernel.backends import registry
        others = ("glsandbox_kernel.backends.container", "glsandbox_kernel.backends.vm",
                  "glsandbox_kernel.backends.gvisor", "glsandbox_kernel.backends.chroot")
        cls = registry.get_backend("basic")
        print(cls.__module__, [m for m in others if m in sys.modules], "glsandbox_kernel.audit.cli" in sys.modules)
        registry.backends()
        print([m for m in others if m not in sys.modules])
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["glsandbox_kernel.backends.basic [] False", "[]"]


def test_our_distribution_is_the_one_pyproject_names() -> None:
    """The cheap first look reads this distribution's entry points: it is the one that registers ours."""
    from importlib.metadata import distribution

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == registry.DISTRIBUTION
    own = {ep.name for ep in distribution(registry.DISTRIBUTION).entry_points.select(group=registry.ENTRY_POINT_GROUP)}
    assert set(pyproject["project"]["entry-points"][registry.ENTRY_POINT_GROUP]) == own
