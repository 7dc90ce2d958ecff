"""TEMPLATE side: the template's imports, and the children's pure set-up code run before they are forked.

:func:`prepare` imports what every worker needs, once, and decides whether
the children fork without Python's fork hooks
(:data:`~.confinement.namespaces.fork_hooks`).

CPython 3.11 writes into every code object it runs until that code is
quickened (a warm-up counter, then the specialised bytecode and its
caches). Code that runs for the first time in each forked child so copies
the pages of all of it into every idle worker: checking the plan cost 0.6-1.4
MiB of each. Run here, on the template's first spawn request and before its
fork, the children share the quickened code. Only code without system calls
runs: the plan check (:meth:`ChildPlan.from_wire`), the seccomp program it
describes (:func:`~.confinement.seccomp.build_filter`) and the process
step's replacement of the environment (done to the template's own, which
gets it back each time); a plan they refuse is the child's to report. What
is left is collected and the rest frozen again (``gc.freeze``), as after
the imports.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from typing import Any

#: Runs of each: past CPython's warm-up count (8), so the code is quickened and its caches set.
ROUNDS = 20


def prepare(preimport: str) -> None:
    """TEMPLATE side, at its start: import the worker's modules (and the comma-separated
    ``preimport``, only ``glsandbox_kernel.worker.*``), then freeze them."""
    import cloudpickle  # noqa: F401

    from . import confinement  # noqa: F401
    from .confinement import ChildPlan, namespaces, sections, tiny_init
    from .linux import fork_calls
    from .worker import loop, netpolicy, unpickle_lite  # noqa: F401

    sections.precompile(ChildPlan)  # every child checks its plan with these, compiled once here
    tiny_init.prepare()  # the program a cloned child's init becomes (one sealed memfd for all)
    preimported = False
    for name in preimport.split(","):
        if name.startswith("glsandbox_kernel.worker."):
            with contextlib.suppress(ImportError):
                __import__(name)
                preimported = True
    # Only threading's and logging's fork hooks are here, and one thread: the children fork
    # without them (pre-imports such as IPython bring hooks of their own, which then run).
    namespaces.fork_hooks = preimported or threading.active_count() != 1 or "random" in sys.modules
    fork_calls()
    # Imported objects go to the permanent generation: the children's
    # collector never walks (and so never copies) the template's pages.
    gc.collect()
    gc.freeze()


def warm_up(plan: dict[str, Any]) -> None:
    """TEMPLATE side: warm the plan check, the seccomp program and the environment."""
    from .confinement import ChildPlan, ConfinementError
    from .confinement.seccomp import build_filter, packed_filter

    with contextlib.suppress(ConfinementError, TypeError, ValueError):
        for _ in range(ROUNDS):
            checked = ChildPlan.from_wire(plan)
        if checked.seccomp is not None and checked.seccomp.enabled:
            for _ in range(ROUNDS):
                build_filter(checked.seccomp)
            packed_filter(checked.seccomp)  # kept: a child with the same policy loads these bytes
    # The process step replaces the environment (os.environ.clear, update: Python code of
    # os and collections.abc): the same on the template's own, which it gets back each time.
    saved = dict(os.environ)
    for _ in range(ROUNDS):
        os.environ.clear()
        os.environ.update(saved)
    gc.collect()
    gc.freeze()
