"""glsandbox on a Dask distributed cluster (host side; dask/distributed imported lazily).

Who calls what:

- the client (a trusted host process) builds a :class:`SandboxedExecutor`
  (``concurrent.futures`` semantics) or calls :func:`sandboxed_submit`; each
  task runs ``fn`` in a glsandbox session kept by the :class:`SandboxPlugin`
  on the Dask worker that got the task;
- the Dask worker (also a trusted host process: the sandbox boundary is
  between it and the sandboxed worker it starts) decodes the result with the
  sandbox's restricted codec (``OSSandbox.execute``) and ships that decoded,
  allowlisted value, the exception (same type) and the call's audit records
  back to the client;
- the client chains every record it gets into one run chain
  (:class:`ClusterAudit`), anchors each session in a run manifest, and
  ``glsandbox audit verify`` checks the result (:func:`verify_cluster_records`).

``glsandbox run --cluster ADDRESS|local[:N] NB...`` (see
:mod:`glsandbox_kernel.notebook.cluster`) runs notebooks the same way.
Importing this package does not import dask; the names below load on first use
and raise ``ImportError`` naming the ``distributed`` extra when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from .audit import ClusterAudit as ClusterAudit
    from .audit import carried_tasks as carried_tasks
    from .audit import verify_cluster_file as verify_cluster_file
    from .audit import verify_cluster_records as verify_cluster_records
    from .client import cluster_doctor as cluster_doctor
    from .client import sandboxed_submit as sandboxed_submit
    from .executor import SandboxedExecutor as SandboxedExecutor
    from .outcome import TaskOutcome as TaskOutcome
    from .plugin import SandboxPlugin as SandboxPlugin

_LAZY = {
    "ClusterAudit": ".audit",
    "carried_tasks": ".audit",
    "verify_cluster_file": ".audit",
    "verify_cluster_records": ".audit",
    "SandboxedExecutor": ".executor",
    "cluster_doctor": ".client",
    "sandboxed_submit": ".client",
    "SandboxPlugin": ".plugin",
    "TaskOutcome": ".outcome",
}


_HINT = "pip install 'glsandbox-kernel[distributed]'"
__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals(), extras={"dask": _HINT, "distributed": _HINT})

__all__ = [
    "ClusterAudit",
    "SandboxPlugin",
    "SandboxedExecutor",
    "TaskOutcome",
    "carried_tasks",
    "cluster_doctor",
    "sandboxed_submit",
    "verify_cluster_file",
    "verify_cluster_records",
]
