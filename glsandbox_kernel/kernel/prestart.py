"""What the kernel starts before ipykernel is imported, and when its sandbox starts (host side).

:func:`prepare` (called by ``__main__``) starts the zygote template: its own
process, importing the cell shell while this one imports ipykernel. Once
the kernel app's configuration is final, :class:`EarlySandbox` makes the
kernel's sandbox in a thread, but starts importing and building it only
once ipykernel's set-up is done (SandboxKernel.start calls :func:`go`:
sockets bound, the loop about to serve), or a request needs the sandbox, or
:data:`GO_TIMEOUT` has passed. Before that it would share this process's
GIL with ipykernel's import and set-up and delay "ready" by its CPU (the
sandbox's modules, the backend registry, the default choice's probes);
after it the kernel mostly waits for the client's sockets to connect, and
after the kernel_info reply a client waits for IOPub to go quiet
(``wait_for_ready``: 0.2 s) before its first request. Every check of the
sandbox's start (backend availability, policy, audit key) still runs
before the first cell: a cell takes the sandbox through
:func:`take_sandbox`, which joins that thread.
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
#: set once ipykernel's set-up is done or the kernel needs its sandbox now (:func:`go`)
GO = threading.Event()
#: seconds the sandbox's start waits for :data:`GO` at most (a client that asks nothing)
GO_TIMEOUT = 1.0


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


def prepare(argv: list[str]) -> None:
    """Start the template, unless the kernelspec names a backend whose workers do not fork from it."""
    if _isolation(argv) not in _NO_TEMPLATE:
        start_template()


def go() -> None:
    """ipykernel's set-up is done, or the kernel needs its sandbox: the sandbox's start may begin."""
    GO.set()


def wait() -> None:
    """Block until :func:`go` or :data:`GO_TIMEOUT` (the threads that start the sandbox, before they do)."""
    GO.wait(GO_TIMEOUT)


class EarlySandbox:
    """The kernel's sandbox, made in a thread from the kernel's options as the app knows them (host side).

    :class:`~glsandbox_kernel.kernel.app.SandboxKernelApp` creates it once its configuration is
    final, before it binds ipykernel's sockets and makes the kernel; its thread waits for
    :func:`go` (the kernel started) before it imports and starts the sandbox. SandboxKernel's
    ``get_sandbox`` takes it over (:func:`take_sandbox`) when the kernel's own options are the
    same ones, else it is closed and the kernel starts its own. ``options``: the option values
    (:func:`.options.option_values`); ``make``: builds the unstarted OSSandbox.
    """

    def __init__(self, options: dict[str, object], make: Callable[[], Any]) -> None:
        self.options = options
        self.sandbox: Any = None
        #: set by :func:`take_sandbox` when the kernel will not take it (other options, shutdown)
        self.unwanted = False
        self._make = make
        self.thread = threading.Thread(target=self._run, name="glsandbox-early", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        trace("early: begin")
        wait()  # not beside ipykernel's import and set-up: once the kernel started, or a request needs it
        trace("early: go")
        if self.unwanted:
            return
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
    """The early sandbox once started, if it was made from ``options``; else None (closed if unused,
    not started if not yet begun)."""
    go()
    if not EARLY:
        return None
    early = EARLY.pop()
    early.unwanted = early.options != options
    early.thread.join()
    if early.sandbox is not None and early.options != options:
        early.sandbox.close()
        return None
    return early.sandbox
