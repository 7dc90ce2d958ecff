"""Where the guest image is and whether it matches this package (HOST side).

``scripts/build-vm-image`` writes ``vmlinuz``, ``initramfs.cpio.gz``,
``root.erofs`` and ``image.json`` into ``.cache/vm`` of the source tree
(or the directory named by ``GLSANDBOX_VM_IMAGE``). A package installed from
a wheel (no source tree around it) looks in ``$XDG_CACHE_HOME/glsandbox/vm``
(``~/.cache/glsandbox/vm``); the wheel ships no builder, so the hint names a
source checkout of the same version. The root image carries
a copy of ``glsandbox_kernel``: an image whose copy differs from the running
package (:func:`source_hash`, over every file of the package the image holds:
the guest may import any module, a pickled call names them by reference) is
refused, since the worker's frames and confinement steps must match.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

ENV_IMAGE = "GLSANDBOX_VM_IMAGE"
_PACKAGE = Path(__file__).resolve().parents[2]  # .../glsandbox_kernel


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """The three boot files and the build facts (``image.json``)."""

    directory: str
    kernel: str
    initrd: str
    root: str
    info: dict[str, Any]


def in_checkout() -> bool:
    """Whether this package runs from a source tree (which holds the image builder)."""
    return (_PACKAGE.parent / "scripts" / "build-vm-image").is_file()


def image_dir() -> str:
    """``$GLSANDBOX_VM_IMAGE``, else ``<source tree>/.cache/vm``, else (a wheel) ``$XDG_CACHE_HOME/glsandbox/vm``."""
    if os.environ.get(ENV_IMAGE):
        return os.environ[ENV_IMAGE]
    if in_checkout():
        return str(_PACKAGE.parent / ".cache" / "vm")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "glsandbox", "vm")


def build_hint(d: str | None = None) -> str:
    """How to get an image into ``d`` (default :func:`image_dir`): the checkout's builder, or (a wheel
    ships none) a source checkout's, whose output is copied here."""
    if in_checkout():
        return f"run scripts/build-vm-image (or set ${ENV_IMAGE} to a built image's folder)"
    return (
        "this install ships no image builder: in a glsandbox source checkout of this same version run "
        f"build-vm-image from its scripts folder, then copy its .cache/vm to {d or image_dir()} "
        f"or set ${ENV_IMAGE} to that folder"
    )


@functools.cache
def source_hash(package: str | None = None) -> str:
    """The hash build-vm-image stamps on the image (it runs this on its staged copy): sha256sum lines of
    every ``*.py`` and ``py.typed`` file of ``package`` (default: this one), C-sorted; what it copies."""
    top = Path(package) if package else _PACKAGE
    files = [p for p in top.rglob("*") if p.is_file() and (p.suffix == ".py" or p.name == "py.typed")]
    outer = hashlib.sha256()
    for rel in sorted(str(p.relative_to(top.parent)) for p in files):
        outer.update(f"{hashlib.sha256((top.parent / rel).read_bytes()).hexdigest()}  {rel}\n".encode())
    return outer.hexdigest()[:16]


_FOUND: dict[str, tuple[tuple[Any, ...], tuple[GuestImage | None, str]]] = {}


def find_image() -> tuple[GuestImage | None, str]:
    """The built image, or None and what is missing (with the command that builds it).

    Checked once per image: the answer is kept while ``image.json`` (which a
    rebuild rewrites last) and this package's guest sources stay the same, so
    a take from the pool costs one ``stat``.
    """
    d = image_dir()
    try:
        st = os.stat(os.path.join(d, "image.json"))
    except OSError:
        return _find_image(d)
    key = (st.st_ino, st.st_mtime_ns, st.st_size, source_hash())
    kept = _FOUND.get(d)
    if kept is not None and kept[0] == key:
        return kept[1]
    found = _find_image(d)
    _FOUND[d] = (key, found)
    return found


def _find_image(d: str) -> tuple[GuestImage | None, str]:
    files = {name: os.path.join(d, name) for name in ("vmlinuz", "initramfs.cpio.gz", "root.erofs", "image.json")}
    missing = [name for name, path in files.items() if not os.path.isfile(path)]
    if missing:
        return None, f"no guest image in {d} (missing {', '.join(missing)}): {build_hint(d)}"
    try:
        with open(files["image.json"]) as fh:
            info = json.load(fh)
    except (OSError, ValueError) as exc:
        return None, f"unreadable {files['image.json']}: {exc}; {build_hint(d)}"
    if info.get("src_hash") != source_hash():
        return None, f"the guest image in {d} was built from other glsandbox_kernel sources: {build_hint(d)}"
    image = GuestImage(d, files["vmlinuz"], files["initramfs.cpio.gz"], files["root.erofs"], info)
    return image, f"kernel {info.get('kernel')}, python {info.get('python')}"
