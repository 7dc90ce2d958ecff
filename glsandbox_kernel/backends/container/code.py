"""The worker's code as the container sees it: a compiled snapshot of the package (host side).

The container's root is read-only and its python writes no bytecode, so a
module without a ``.pyc`` beside it is compiled from source in every
container, every time. The host's own ``__pycache__`` is no help: the
modules the worker imports (the request loop, the codec, the bootstrap) are
never imported on the host, an environment may set PYTHONDONTWRITEBYTECODE,
and a source tree may not be writable. Measured on a fresh cold container:
the worker's imports took 52-68 ms of CPU with compiled modules against
67-109 ms without (``-X importtime`` inside the container, 6 runs each).

So the host binds a snapshot instead of its package directory: a copy of
the package (every file but bytecode) plus ``__pycache__`` compiled with
the host's interpreter (the image's must have the same ``X.Y``, checked
before any container runs it), as unchecked-hash pycs (the copy never
changes under its name: the name is the digest of the sources). It lives in
a private per-user directory of the temporary directory and is made once
per version of the package, then shared by every container and host
process of this user. Any trouble making it (no room, a directory that is
not ours) falls back to binding the package directory as it is.

Who calls: :func:`.settings.worker_binds` (once per process, cached).
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import hashlib
import logging
import os
import py_compile
import shutil
import stat
import tempfile
import time

log = logging.getLogger("glsandbox.container")

#: Snapshots kept besides the current one (older ones are removed after a day).
KEEP = 4
_STALE_AFTER = 86400.0
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def source_digest(pkg_dir: str) -> str:
    """SHA-256 over every file of the package but bytecode: relative path and content."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(pkg_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, pkg_dir).encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:20]


def private_root() -> str:
    """``$TMPDIR/glsandbox-code-UID``: made 0700 if absent; refused unless ours and closed to others."""
    root = os.path.join(tempfile.gettempdir(), f"glsandbox-code-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"{root} is not a private directory of this user")
    return root


def _make_readable(top: str) -> None:
    """Directories 0755, files 0644: the container's user (65534) reads the snapshot, nobody writes it."""
    for root, _dirs, files in os.walk(top):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def _build(pkg_dir: str, final: str, shown_as: str) -> None:
    """Copy and compile into a fresh directory next to ``final``, then rename it into place.

    ``shown_as`` is the package's path inside the container (the modules' file names).
    """
    staging = tempfile.mkdtemp(prefix=".build-", dir=os.path.dirname(final))
    try:
        target = os.path.join(staging, "glsandbox_kernel")
        shutil.copytree(pkg_dir, target, ignore=_SKIP)
        ok = compileall.compile_dir(
            target,
            quiet=2,
            ddir=shown_as,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        if not ok:
            raise OSError(f"compileall failed in {target}")
        _make_readable(target)
        try:
            os.rename(target, final)
        except OSError:
            if not os.path.isdir(final):  # not another process that won the race: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _prune(root: str, current: str) -> None:
    """Remove old snapshots (and module bundles) beyond :data:`KEEP`, only those unused for a day (a live container may use one)."""
    entries = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if path == current or name.startswith(".build-"):
            continue
        with contextlib.suppress(OSError):
            entries.append((os.lstat(path).st_mtime, path))
    entries.sort(reverse=True)
    now = time.time()
    for mtime, path in entries[KEEP:]:
        if now - mtime > _STALE_AFTER:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:  # a module bundle (:mod:`.bundle`)
                with contextlib.suppress(OSError):
                    os.remove(path)


@functools.cache
def worker_code_dir(pkg_dir: str, shown_as: str) -> str:
    """The directory to bind at ``shown_as`` (the container's ``glsandbox_kernel``): the snapshot, else ``pkg_dir``."""
    try:
        root = private_root()
        final = os.path.join(root, source_digest(pkg_dir))
        if not os.path.isdir(final):
            t0 = time.monotonic()
            _build(pkg_dir, final, shown_as)
            log.debug("compiled the worker's code into %s in %.2f s", final, time.monotonic() - t0)
            _prune(root, final)
        else:
            with contextlib.suppress(OSError):
                os.utime(final)  # in use: keep it from pruning
        return final
    except OSError as exc:
        log.warning("container: binding %s uncompiled (every container compiles it): %s", pkg_dir, exc)
        return pkg_dir
