"""Build the image's module bundle: SANDBOX side, in a container of that image, no user code.

Run by the host once per image and worker code (:mod:`glsandbox_kernel.backends.container.bundle`)::

    python3 -s -E -c "import sys; started = set(sys.modules); \\
        sys.path[0] = '/opt/glsandbox/site/glsandbox_kernel/worker'; import bootstrap; \\
        spec = bootstrap.prepare(sys.argv); \\
        from glsandbox_kernel.worker.bootstrap_bundle import build; build(spec, started)" SPEC_JSON

With the paths prepared as the bootstrap prepares them, it imports what the worker
imports before its first result (:data:`bootstrap.WORKER_MODULES`), and
writes, for each module that came from a source file of the image or of the
worker's snapshot (not from the dependency directories, which are the
host's and may change), the code object its own loader made, to
``SPEC["out"]``. The host only copies the file; the bootstrap's
:class:`bootstrap._Bundle` reads it. Format: :data:`bootstrap.BUNDLE_MAGIC`,
the index's length (8 bytes, little-endian), the marshalled index
``{"version": sys.version, "modules": {name: (origin, offset, length)}}``,
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


def collect(started: set[str], skip_under: list[str]) -> dict[str, tuple[str, bytes]]:
    """``{name: (origin, marshalled code)}`` of the modules imported since ``started``."""
    from importlib.machinery import SourceFileLoader

    found: dict[str, tuple[str, bytes]] = {}
    for name, module in sorted(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        loader = getattr(spec, "loader", None)
        origin = getattr(spec, "origin", None)
        if name in started or name in _NOT_BUNDLED or type(loader) is not SourceFileLoader:
            continue
        if not isinstance(origin, str) or not origin.endswith(".py"):
            continue
        if any(origin.startswith(d.rstrip("/") + "/") for d in skip_under):
            continue
        code = loader.get_code(name)
        if code is not None:
            found[name] = (origin, marshal.dumps(code))
    return found


def write(path: str, modules: dict[str, tuple[str, bytes]]) -> None:
    index: dict[str, Any] = {"version": sys.version, "modules": {}}
    offset = 0
    for name, (origin, code) in modules.items():
        index["modules"][name] = (origin, offset, len(code))
        offset += len(code)
    head = marshal.dumps(index)
    with open(path + ".part", "wb") as fh:
        fh.write(bootstrap.BUNDLE_MAGIC + len(head).to_bytes(8, "little") + head)
        for _origin, code in modules.values():
            fh.write(code)
    os.rename(path + ".part", path)


def build(spec: dict[str, Any], started: set[str]) -> None:
    """Import the worker's start-up modules, then write the bundle of what came from files."""
    for name in bootstrap.WORKER_MODULES:
        importlib.import_module(name)
    write(str(spec["out"]), collect(started, [str(d) for d in spec["deps"]]))
