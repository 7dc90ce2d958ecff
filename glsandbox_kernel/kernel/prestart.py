"""What the kernel starts before ipykernel is imported (host side; called by ``__main__``).

:func:`prepare` starts what the first cell needs and what does not depend
on the kernel's options: the zygote template (its own process, importing
the cell shell while this one imports ipykernel) and, in a thread, the host
side of a sandbox (its modules, the backend registry, the default backend's
probes). SandboxKernel's prestart joins that thread (:func:`wait`) before it
starts its sandbox, so the two never do the same work at once. Once the
kernel app's configuration is final, :class:`EarlySandbox` starts the
kernel's sandbox itself, while ipykernel binds its sockets and makes the kernel.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

#: backends whose workers are not forked from the zygote template
_NO_TEMPLATE = ("container", "gvisor", "vm")
#: what the template imports for the kernel's workers: their IPython shell and comms
SHELL_MODULES = ("glsandbox_kernel.worker.shell", "glsandbox_kernel.worker.comms")
#: the host-side warm-up thread :func:`prepare` started (joined by SandboxKernel's prestart)
WARMING: list[threading.Thread] = []


#: ``$GLSANDBOX_KERNEL_TRACE``: a file the kernel appends ``<time.monotonic()> <label>`` lines to
#: (where its start and first cell spend their time; benchmarks/bench_kernel.py ``--trace``)
_TRACE = os.environ.get("GLSANDBOX_KERNEL_TRACE")


def trace(label: str) -> None:
    """Note a moment of the kernel's start (host side; a no-op unless ``$GLSANDBOX_KERNEL_TRACE`` names a file)."""
    if _TRACE:
        with open(_TRACE, "a", encoding="utf-8") as out:
            out.write(f"{time.monotonic():.6f} {os.getpid()} {label}\n")


def _isolation(argv: list[str]) -> str | None:
    for arg in argv:
        name, _, value = arg.partition("=")
        if name.lower().endswith(".isolation"):
            return value.strip("'\"").lower()
    return None


def start_template() -> None:
    """Start the zygote template now, with the cell shell pre-imported (host side, before ipykernel).

    The worker the kernel starts later is forked with its shell's modules in
    memory, so the first cell waits for no import. Any failure is left to
    the sandbox's own start, which reports it.
    """
    try:
        from .. import zygote

        zygote.PREIMPORT.extend(m for m in SHELL_MODULES if m not in zygote.PREIMPORT)
        zygote.get_zygote()
        trace("template started")
    except Exception:  # noqa: BLE001 - the sandbox's own start reports what is wrong
        pass


def _warm_host(isolation: str | None) -> None:
    """Thread: import the sandbox's host side and load its backend (what OSSandbox() does first).

    A kernelspec that names a backend loads that one only; else the default
    choice loads them all and probes them.
    """
    try:
        from .. import sandbox  # noqa: F401
        from ..backends import registry

        if isolation is None:
            registry.default_backend()
        else:
            registry.get_backend(isolation)
        trace("warm: done")
    except Exception:  # noqa: BLE001 - the sandbox's own start reports what is wrong
        pass


def prepare(argv: list[str]) -> None:
    """Start the template (unless the kernelspec names a backend without one) and the warm-up thread."""
    isolation = _isolation(argv)
    if isolation not in _NO_TEMPLATE:
        start_template()
    thread = threading.Thread(target=_warm_host, args=(isolation,), name="glsandbox-warm", daemon=True)
    thread.start()
    WARMING.append(thread)


def wait() -> None:
    """Join the warm-up thread, if :func:`prepare` started one (SandboxKernel's prestart thread)."""
    for thread in WARMING:
        thread.join()


class EarlySandbox:
    """The kernel's sandbox, started in a thread as soon as the kernel's options are known (host side).

    :class:`~glsandbox_kernel.kernel.app.SandboxKernelApp` starts it once its configuration is
    final, before it binds ipykernel's sockets and makes the kernel; SandboxKernel's
    ``get_sandbox`` takes it over (:func:`take_sandbox`) when the kernel's own options are the
    same ones, else it is closed and the kernel starts its own. ``options``: the option values
    (:func:`.options.option_values`); ``make``: builds the unstarted OSSandbox.
    """

    def __init__(self, options: dict[str, object], make: Callable[[], Any]) -> None:
        self.options = options
        self.sandbox: Any = None
        self._make = make
        self.thread = threading.Thread(target=self._run, name="glsandbox-early", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        trace("early: begin")
        wait()  # the warm-up thread imports what OSSandbox() needs: never both at once
        try:
            sandbox = self._make()
        except Exception:  # noqa: BLE001 - the kernel builds its own and reports the problem
            return
        try:
            sandbox.start()
            trace("early: sandbox started")
        except Exception:  # noqa: BLE001 - the kernel starts its own and reports the problem
            sandbox.close()
            return
        self.sandbox = sandbox
        try:  # the worker's IPython shell answers once: its first cell then waits for no set-up
            from .quick import QUICK_TIMEOUT

            sandbox.request({"type": "is_complete", "code": ""}, "is_complete_reply", timeout=QUICK_TIMEOUT)
            trace("early: shell answered")
        except Exception:  # noqa: BLE001 - the first cell reports what is wrong
            pass


#: the sandbox :class:`EarlySandbox` is starting, until the kernel takes it
EARLY: list[EarlySandbox] = []


def take_sandbox(options: dict[str, object]) -> Any:
    """The early sandbox once started, if it was made from ``options``; else None (closed if unused)."""
    if not EARLY:
        return None
    early = EARLY.pop()
    early.thread.join()
    if early.sandbox is not None and early.options != options:
        early.sandbox.close()
        return None
    return early.sandbox
