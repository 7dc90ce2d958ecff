"""The image's module bundle: built once per image and worker code, bound into every container (host side).

Under gVisor a fresh worker spent most of its start above the floor in
imports, and those in file syscalls (each a trip to the sentry and its
gofer): ~110 modules, ~8 syscalls each. The bundle holds the code objects
of the modules the worker imports before its first result, made by the
image's own python from the image's own files (and the worker snapshot's,
:mod:`.code`) in one locked-down container (network none, read-only root,
no capabilities, uid 65534, no user code), then read by the bootstrap in
one go (:class:`glsandbox_kernel.worker.bootstrap._Bundle`). The host never
loads it: it copies at most :data:`MAX_BYTES` of a regular file. Named by
the image's id, the snapshot's digest and the state of the bound dependency
folders (:func:`_file_for`); one for another python build is ignored inside. Any failure leaves containers importing as before.

Who calls: :func:`.launch.launch_worker` (:func:`ensure_bundle`, which runs
the builder there, once per image and process) and
:func:`.settings.container_settings` (:func:`bundle_for`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ... import hosttemp
from ...worker.bootstrap import BUNDLE_PATH
from . import docker_api
from .code import private_root

log = logging.getLogger("glsandbox.container")

BUILD_TIMEOUT = 120.0
MAX_BYTES = 32 << 20
#: Where the builder container writes (its only writable bind).
OUT_DIR = "/run/glsandbox-bundle"
_BUILD_CODE = (
    "import sys; started = set(sys.modules); sys.path[0] = {worker!r}; import bootstrap; "
    "spec = bootstrap.prepare(sys.argv); "
    "from glsandbox_kernel.worker.bootstrap_bundle import build; build(spec, started)"
)

_lock = threading.Lock()
#: image name -> image id, as asked of the daemon by :func:`ensure_bundle` (settings only read it).
_image_ids: dict[str, str] = {}
#: bundle files (named by image, snapshot and folders) whose build failed in this process: not tried again.
_failed: set[str] = set()


def _file_for(image_id: str, binds: Mapping[str, Any]) -> str:
    """Named by the image, the worker snapshot (the first bind) and every bound host folder, each
    dependency folder with its inode and mtime: another checkout or venv with the same worker code,
    or the same venv after a ``pip install`` (which adds and removes entries of site-packages), has
    other dependency files (sizes, mtimes), which a bundle built before would fail the bootstrap's
    checks of (a fresh clone's new venv where the last clone's was got that one's bundle in CI).
    A file edited in place leaves its folder as it was: the bootstrap's check imports it from disk.
    Raises OSError for a folder that is gone."""
    code_dir = next(iter(binds))
    parts = []
    for folder in sorted(binds):
        if folder == code_dir:  # named by its digest (and touched on every use: its mtime says nothing)
            parts.append(folder)
            continue
        st = os.stat(folder)
        parts.append(f"{folder}:{st.st_ino}:{st.st_mtime_ns}")
    folders = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    return os.path.join(private_root(), f"bundle-{image_id.split(':')[-1][:16]}-{os.path.basename(code_dir)}-{folders}")


def bundle_for(image: str, binds: Mapping[str, Any]) -> str | None:
    """The built bundle's host path for ``image`` and the worker's ``binds`` (snapshot first), else None (no daemon call)."""
    image_id = _image_ids.get(image)
    if image_id is None:
        return None
    with contextlib.suppress(OSError):
        path = _file_for(image_id, binds)
        if os.path.isfile(path):
            return path
    return None


def bundle_bind(path: str | None) -> dict[str, dict[str, str]]:
    """The settings' bind for a built bundle (none without one)."""
    return {} if path is None else {path: {"bind": BUNDLE_PATH, "mode": "ro"}}


def builder_command(worker_dir: str, spec: dict[str, Any]) -> list[str]:
    """The builder container's command (:mod:`glsandbox_kernel.worker.bootstrap_bundle`); ``spec["out"]`` in :data:`OUT_DIR`."""
    return ["python3", "-s", "-E", "-c", _BUILD_CODE.format(worker=worker_dir), json.dumps(spec)]


def ensure_bundle(image: str, binds: Mapping[str, Any], run_builder: Callable[[str], None]) -> bool:
    """Build the bundle if there is none yet; True when there is one (built now or before).

    ``run_builder(out_dir)`` runs the builder container with ``out_dir`` bound
    writable at :data:`OUT_DIR` and raises unless it wrote ``bundle`` there.
    """
    with _lock:
        try:
            image_id = _image_ids.get(image) or str(docker_api.api().inspect_image(image)["Id"])
        except Exception as exc:  # noqa: BLE001 - no image or no daemon: the launch reports it
            log.debug("bundle: no id for %s: %s", image, exc)
            return False
        _image_ids[image] = image_id
        try:
            final = _file_for(image_id, binds)
        except OSError:
            return False
        if os.path.isfile(final):
            return True
        if final in _failed:
            return False
        outer = hosttemp.private_dir("ctr", "bundle")
        try:
            out = os.path.join(outer, "o")
            os.mkdir(out)
            os.chmod(out, 0o777)  # the container's uid writes here; the 0700 outer keeps other users out
            run_builder(out)
            _copy_out(os.path.join(out, "bundle"), final)
            return True
        except Exception as exc:  # noqa: BLE001 - any trouble: containers import as before
            _failed.add(final)
            log.warning("container: no module bundle for %s (imports stay per file): %s", image, exc)
            return False
        finally:
            shutil.rmtree(outer, ignore_errors=True)


def _copy_out(path: str, final: str) -> None:
    """Copy the builder's file (untrusted bytes, never parsed here) into place: regular, bounded, not a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            raise OSError(f"the builder's output is not a regular file of at most {MAX_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise OSError("the builder's output grew while it was read")
    part = f"{final}.{os.getpid()}.part"
    with open(part, "wb") as fh:
        fh.write(data)
    os.chmod(part, 0o644)  # the container's uid reads it
    os.replace(part, final)
