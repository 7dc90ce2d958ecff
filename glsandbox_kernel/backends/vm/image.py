"""Where the guest image is and whether it matches this package (HOST side).

``scripts/build-vm-image`` writes ``vmlinuz``, ``initramfs.cpio.gz``,
``root.erofs`` and ``image.json`` into ``.cache/vm`` of the source tree
(or the directory named by ``GLSANDBOX_VM_IMAGE``). The root image carries
a copy of ``glsandbox_kernel``: an image whose guest-side modules
(:data:`GUEST_SOURCES`) differ from the running package's is refused, since
the worker's frames and confinement steps must match.
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


def image_dir() -> str:
    """``$GLSANDBOX_VM_IMAGE`` or ``<source tree>/.cache/vm``."""
    return os.environ.get(ENV_IMAGE) or str(_PACKAGE.parent / ".cache" / "vm")


#: The modules the guest runs (worker, its confinement steps and what they import,
#: the frame codec's three parts among them); must match ``src_hash`` in scripts/build-vm-image.
GUEST_SOURCES = (
    "worker",
    "confinement",
    "__init__.py",
    "_version.py",
    "codec.py",
    "codec_fast.py",
    "codec_arrays.py",
    "codec_columns.py",
    "protocol.py",
    "exceptions.py",
    "config.py",
    "linux.py",
    "procfs.py",
    "supervisor.py",
)


@functools.cache
def source_hash() -> str:
    """The guest-side hash build-vm-image stamps: sha256sum lines of those files, C-sorted."""
    base = _PACKAGE.parent
    files: list[Path] = []
    for name in GUEST_SOURCES:
        top = _PACKAGE / name
        if top.is_dir():
            files += [p for p in top.rglob("*") if p.is_file()]
        elif top.is_file():
            files.append(top)
    paths = sorted(str(p.relative_to(base)) for p in files if p.suffix == ".py" or p.name == "py.typed")
    outer = hashlib.sha256()
    for rel in paths:
        digest = hashlib.sha256((base / rel).read_bytes()).hexdigest()
        outer.update(f"{digest}  {rel}\n".encode())
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
        return None, f"no guest image in {d} (missing {', '.join(missing)}): run scripts/build-vm-image"
    try:
        with open(files["image.json"]) as fh:
            info = json.load(fh)
    except (OSError, ValueError) as exc:
        return None, f"unreadable {files['image.json']}: {exc}; run scripts/build-vm-image"
    if info.get("src_hash") != source_hash():
        return None, f"the guest image in {d} was built from other glsandbox_kernel sources: run scripts/build-vm-image"
    image = GuestImage(d, files["vmlinuz"], files["initramfs.cpio.gz"], files["root.erofs"], info)
    return image, f"kernel {info.get('kernel')}, python {info.get('python')}"
