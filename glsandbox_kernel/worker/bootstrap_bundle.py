"""Build the image's module bundle: SANDBOX side, in a container of that image, no user code.

Run by the host once per image and worker code (:mod:`glsandbox_kernel.backends.container.bundle`)::

    python3 -s -E -c "import sys; started = set(sys.modules); \\
        sys.path[0] = '/opt/glsandbox/site/glsandbox_kernel/worker'; import bootstrap; \\
        spec = bootstrap.prepare(sys.argv); \\
        from glsandbox_kernel.worker.bootstrap_bundle import build; build(spec, started)" SPEC_JSON

With the paths prepared as the bootstrap prepares them, it imports what the worker
imports before its first result (:data:`bootstrap.WORKER_MODULES`), and
writes, for each module that came from a source file, the code object its
own loader made, and for each extension module its file, to ``SPEC["out"]``;
a file of the dependency directories (the host's, which may change) with its
size and mtime, which the bootstrap checks before use. The host only copies the file; the bootstrap's
:class:`bootstrap._Bundle` reads it. Format: :data:`bootstrap.BUNDLE_MAGIC`,
the index's length (8 bytes, little-endian), the marshalled index
``{"version": sys.version, "modules": {name: (origin, offset, length, check)}}``
(offset -1: an extension module; -2: a module not there, which the start-up tries),
then the marshalled code objects.
"""

from __future__ import annotations

import importlib
import marshal
import os
import sys
from typing import Any

from . import bootstrap

#: Not for the bundle: the bootstrap itself (loaded before it), the packages it registers lazily.
_NOT_BUNDLED = frozenset(
    {"bootstrap", __name__, bootstrap.__name__, "glsandbox_kernel", "glsandbox_kernel.confinement"}
)


def collect(started: set[str], check_under: list[str]) -> dict[str, tuple[str, bytes | None, tuple[int, int] | None]]:
    """``{name: (origin, marshalled code or None for an extension module, check)}`` of the modules imported since ``started``.

    ``check`` is the file's (size, mtime_ns) for files under ``check_under``
    (the host's dependency folders, which may change: the bootstrap compares
    before use), else None (the image's files and the worker snapshot's do not).
    """
    from importlib.machinery import ExtensionFileLoader, SourceFileLoader

    found: dict[str, tuple[str, bytes | None, tuple[int, int] | None]] = {}
    for name, module in sorted(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        loader = getattr(spec, "loader", None)
        origin = getattr(spec, "origin", None)
        if name in started or name in _NOT_BUNDLED or not isinstance(origin, str):
            continue
        check = None
        if any(origin.startswith(d.rstrip("/") + "/") for d in check_under):
            st = os.stat(origin)
            check = (st.st_size, st.st_mtime_ns)
        if type(loader) is ExtensionFileLoader:
            found[name] = (origin, None, check)
        elif type(loader) is SourceFileLoader and origin.endswith(".py"):
            code = loader.get_code(name)
            if code is not None:
                found[name] = (origin, marshal.dumps(code), check)
    return found


def write(
    path: str,
    modules: dict[str, tuple[str, bytes | None, tuple[int, int] | None]],
    absent: tuple[str, ...] | list[str] = (),
) -> None:
    index: dict[str, Any] = {"version": sys.version, "modules": {name: ("", -2, 0, None) for name in absent}}
    offset = 0
    for name, (origin, code, check) in modules.items():
        if code is None:  # an extension module: where it is
            index["modules"][name] = (origin, -1, 0, check)
            continue
        index["modules"][name] = (origin, offset, len(code), check)
        offset += len(code)
    head = marshal.dumps(index)
    with open(path + ".part", "wb") as fh:
        fh.write(bootstrap.BUNDLE_MAGIC + len(head).to_bytes(8, "little") + head)
        for _origin, code, _check in modules.values():
            if code is not None:
                fh.write(code)
    os.rename(path + ".part", path)


def build(spec: dict[str, Any], started: set[str]) -> None:
    """Import the worker's start-up modules, then write the bundle of what came from files and what is absent."""
    asked: list[str] = []
    sys.addaudithook(lambda event, args: asked.append(args[0]) if event == "import" else None)
    for name in bootstrap.WORKER_MODULES:
        importlib.import_module(name)
    modules = collect(started, [str(d) for d in spec["deps"]])
    # Tried and not found (pickle's `from org.python.core import ...`): each a search of every
    # path entry, the dependency folder's listing included; the bootstrap answers them at once.
    write(str(spec["out"]), modules, sorted({n for n in asked if isinstance(n, str) and n not in sys.modules}))
