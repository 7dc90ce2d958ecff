"""The image's module bundle: the worker's start-up modules come from one read, as the image's own code.

Real containers (CONTAINER and GVISOR) for what the worker imports; the
bootstrap's finder and the host's copy of the builder's output on their own
(sandbox-side code run here, on crafted files).
"""

from __future__ import annotations

import marshal
import os
import shutil
import sys
from typing import Any

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, OSSandboxConfig
from glsandbox_kernel.backends.container import LABEL_HOST_PID, bundle, default_image, docker_api, flush_removals
from glsandbox_kernel.backends.container import warm as docker_pool
from glsandbox_kernel.backends.container.settings import worker_binds
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.worker import bootstrap

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def where_modules_came_from() -> dict[str, Any]:
    """SANDBOX side: the loaders of a few start-up modules, their files, and whether the finder is gone."""
    import inspect
    import json
    import os
    import sys

    names = ("json", "typing", "ctypes", "_ctypes", "glsandbox_kernel.worker.loop", "glsandbox_kernel.codec", "msgpack")
    names += ("glsandbox_kernel.confinement.seccomp_load",)
    return {
        "loaders": {n: type(sys.modules[n].__spec__.loader).__name__ for n in names},
        "files_exist": all(os.path.exists(sys.modules[n].__file__) for n in names),
        "finder_left": [type(f).__name__ for f in sys.meta_path if type(f).__name__ == "_Bundle"],
        "source": inspect.getsource(json.loads).startswith("def loads("),
    }


def _seen_in_a_new_container(name: str) -> dict[str, Any]:
    """:func:`where_modules_came_from` in a container started now (no warm pool: its own start-up)."""
    docker_pool.set_pool_size(0)
    try:
        with OSSandbox(OSSandboxConfig(isolation_type=IsolationType(name), execution_timeout=60.0)) as sb:
            return dict(sb.execute(where_modules_came_from))
    finally:
        docker_pool.set_pool_size(None)
        assert flush_removals(30), "container removals did not finish"


@pytest.mark.container
@pytest.mark.parametrize("name", ["container", "gvisor"])
def test_the_worker_imports_its_start_up_modules_from_the_bundle(name: str) -> None:
    """The image's stdlib and the worker snapshot's modules from the bundle; the host's deps as usual."""
    backend_cls = backends()[name]
    ok, why = backend_cls.available()
    if not ok:
        pytest.skip(f"{name}: {why}")
    seen = _seen_in_a_new_container(name)
    bundled = dict.fromkeys(
        ("json", "typing", "ctypes", "glsandbox_kernel.worker.loop", "glsandbox_kernel.codec", "msgpack")
    )
    bundled["glsandbox_kernel.confinement.seccomp_load"] = None
    # The bundle holds what the start-up imports: never dataclasses, inspect or ast (the policy comes packed).
    path = bundle.bundle_for(default_image(), worker_binds())
    assert path is not None
    with open(path, "rb") as fh:  # the index only (the image's python build: not loadable here)
        data = fh.read()
    start = len(bootstrap.BUNDLE_MAGIC) + 8
    held = marshal.loads(data[start : start + int.from_bytes(data[start - 8 : start], "little")])["modules"]
    assert "ctypes" in held and "glsandbox_kernel.confinement.seccomp_load" in held
    assert held["_ctypes"][1] == -1 and held["msgpack"][3] is not None  # an extension's file; a dep's check
    assert not {"dataclasses", "inspect", "ast", "glsandbox_kernel.confinement.seccomp"} & set(held)
    # The host's deps too, each checked by size and mtime first; extension modules from where they are.
    assert seen["loaders"] == {**{n: "_BundledLoader" for n in bundled}, "_ctypes": "ExtensionFileLoader"}
    assert seen["files_exist"] and seen["source"]  # file names, and sources for tracebacks, as on disk
    assert seen["finder_left"] == []  # removed before any request ran
    labels = {"label": f"{LABEL_HOST_PID}={os.getpid()}"}
    assert docker_api.api().containers(all=True, filters=labels) == []  # the builder is gone too


def _reinstall_like_pip(pkg_dir: str) -> None:
    """What ``pip install --force-reinstall`` does to a package: the same files, new ones (new mtimes),
    the old directory moved aside, the new one put in its place, the old one removed."""
    parent, name = os.path.split(pkg_dir)
    fresh, old = os.path.join(parent, f".{name}-new-{os.getpid()}"), os.path.join(parent, f".{name}-old-{os.getpid()}")
    shutil.copytree(pkg_dir, fresh, copy_function=shutil.copy, ignore=shutil.ignore_patterns("__pycache__"))
    os.rename(pkg_dir, old)
    os.rename(fresh, pkg_dir)
    shutil.rmtree(old)


@pytest.mark.container
def test_a_reinstalled_dependency_gets_a_new_bundle_that_serves_it() -> None:
    """After a reinstall of msgpack in the bound venv (as pip does it: new files, new mtimes) the next
    container gets a bundle built from the new files, not the old bundle whose checks now fail (the
    CI that ran a fresh clone's new venv where the last clone's venv had been)."""
    import msgpack

    ok, why = backends()["container"].available()
    if not ok:
        pytest.skip(f"container: {why}")
    pkg_dir = os.path.dirname(msgpack.__file__)
    if not os.access(os.path.dirname(pkg_dir), os.W_OK):
        pytest.skip(f"{os.path.dirname(pkg_dir)} is not writable here")
    assert _seen_in_a_new_container("container")["loaders"]["msgpack"] == "_BundledLoader"
    before = bundle.bundle_for(default_image(), worker_binds())
    _reinstall_like_pip(pkg_dir)
    assert bundle.bundle_for(default_image(), worker_binds()) is None  # the old bundle is not bound again
    assert _seen_in_a_new_container("container")["loaders"]["msgpack"] == "_BundledLoader"
    after = bundle.bundle_for(default_image(), worker_binds())
    assert after is not None and before is not None and after != before
    os.remove(before)  # named by a state of the venv that is gone: no container binds it again


def test_the_bundles_name_follows_the_dependency_folders_not_the_snapshots_use(tmp_path: Any) -> None:
    """A package replaced in a bound dependency folder (a pip install) names another bundle; the
    snapshot's touch on every use does not; a folder that is gone names none."""
    snapshot, deps = tmp_path / "snapshot", tmp_path / "site-packages"
    (deps / "pkg").mkdir(parents=True)
    (deps / "pkg" / "__init__.py").write_text("X = 1\n")
    snapshot.mkdir()
    os.utime(deps, ns=(10**18, 10**18))  # installed a while ago (not in the clock tick of the reinstall below)
    binds = {str(snapshot): {"bind": "/s"}, str(deps): {"bind": "/d"}}
    first = bundle._file_for("sha256:abc", binds)
    assert bundle._file_for("sha256:abc", binds) == first
    os.utime(snapshot)
    assert bundle._file_for("sha256:abc", binds) == first
    _reinstall_like_pip(str(deps / "pkg"))
    second = bundle._file_for("sha256:abc", binds)
    assert second != first and os.path.dirname(second) == os.path.dirname(first)
    shutil.rmtree(deps)
    with pytest.raises(OSError):
        bundle._file_for("sha256:abc", binds)


def _write_bundle(path: Any, version: str, modules: dict[str, tuple[str, str]]) -> None:
    index: dict[str, Any] = {"version": version, "modules": {}}
    blobs = b""
    for name, (origin, source) in modules.items():
        code = marshal.dumps(compile(source, origin, "exec"))
        index["modules"][name] = (origin, len(blobs), len(code))
        blobs += code
    head = marshal.dumps(index)
    path.write_bytes(bootstrap.BUNDLE_MAGIC + len(head).to_bytes(8, "little") + head + blobs)


def test_the_finder_serves_each_module_once_and_ignores_other_builds(tmp_path: Any) -> None:
    origin = tmp_path / "bundled_mod.py"
    origin.write_text("X = 'from disk'\n")
    good = tmp_path / "good"
    _write_bundle(good, sys.version, {"bundled_mod_x": (str(origin), "X = 'from the bundle'\n")})
    finder = bootstrap._Bundle.load(str(good))
    assert finder is not None
    spec = finder.find_spec("bundled_mod_x")
    assert spec is not None and spec.origin == str(origin) and spec.loader is not None
    module = type(sys)("bundled_mod_x")
    module.__spec__ = spec
    spec.loader.exec_module(module)
    assert module.X == "from the bundle"
    assert finder.find_spec("bundled_mod_x") is None  # one use: a re-import goes to the files
    assert finder.find_spec("not_in_it") is None
    # Another python build's bundle, a foreign file, a cut one: not used.
    other = tmp_path / "other"
    _write_bundle(other, sys.version + " (another build)", {"bundled_mod_x": (str(origin), "X = 1\n")})
    (tmp_path / "foreign").write_bytes(b"\x00" * 64)
    (tmp_path / "cut").write_bytes(good.read_bytes()[: len(bootstrap.BUNDLE_MAGIC) + 12])
    for bad in ("other", "foreign", "cut", "missing"):
        assert bootstrap._Bundle.load(str(tmp_path / bad)) is None, bad


def test_the_finder_checks_the_hosts_files_and_answers_extensions_and_absent_names(tmp_path: Any) -> None:
    """A dependency's entry is used only while its file has the size and mtime of the build; an
    extension's entry is its file; an absent name fails at once (no search of the path)."""
    import _json

    dep = tmp_path / "dep_mod.py"
    dep.write_text("X = 'from disk'\n")
    st = dep.stat()
    code = marshal.dumps(compile("X = 'from the bundle'\n", str(dep), "exec"))
    ext = _json.__file__ if hasattr(_json, "__file__") else None
    modules: dict[str, Any] = {
        "dep_fresh": (str(dep), 0, len(code), (st.st_size, st.st_mtime_ns)),
        "dep_stale": (str(dep), 0, len(code), (st.st_size + 1, st.st_mtime_ns)),
        "gone_x": ("", -2, 0, None),
        "odd_entry": ("x",),
    }
    if ext is not None:
        modules["_json"] = (ext, -1, 0, None)
    head = marshal.dumps({"version": sys.version, "modules": modules})
    path = tmp_path / "bundle"
    path.write_bytes(bootstrap.BUNDLE_MAGIC + len(head).to_bytes(8, "little") + head + code)
    finder = bootstrap._Bundle.load(str(path))
    assert finder is not None
    fresh = finder.find_spec("dep_fresh")
    assert fresh is not None and type(fresh.loader).__name__ == "_BundledLoader"
    assert finder.find_spec("dep_stale") is None  # changed since the build: imported from the file
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("gone_x")
    assert finder.find_spec("odd_entry") is None
    if ext is not None:
        spec = finder.find_spec("_json")
        assert spec is not None and spec.origin == ext and type(spec.loader).__name__ == "ExtensionFileLoader"


def test_the_builders_output_is_copied_only_as_a_bounded_regular_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.write_bytes(b"x" * 100)
    final = tmp_path / "final"
    bundle._copy_out(str(out), str(final))
    assert final.read_bytes() == b"x" * 100 and oct(final.stat().st_mode & 0o777) == "0o644"
    secret = tmp_path / "secret"
    secret.write_text("host file")
    link = tmp_path / "link"
    link.symlink_to(secret)
    with pytest.raises(OSError):
        bundle._copy_out(str(link), str(tmp_path / "from-link"))  # a link planted by the container
    monkeypatch.setattr(bundle, "MAX_BYTES", 10)
    with pytest.raises(OSError):
        bundle._copy_out(str(out), str(tmp_path / "too-big"))
    assert not (tmp_path / "from-link").exists() and not (tmp_path / "too-big").exists()
