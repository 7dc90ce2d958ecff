"""The shell parent of each request, kept per asyncio task; comm deliveries in order (host side).

Who calls: ipykernel's ``Kernel`` (``dispatch_shell`` sets the parent of each
shell message and publishes ``busy``/``idle`` under ``get_parent("shell")``)
and :class:`~glsandbox_kernel.kernel.kernel.SandboxKernel` (``do_execute``
reads the cell's parent and stdin ident). No user code runs here.

Why: ipykernel 7 runs every shell message's task in one shared
``contextvars.Context`` and keeps the shell parent in context variables of
it. Comm messages that arrive while another request holds the shell lock are
dispatched concurrently; ipykernel saves the parent it sees when the comm
message arrives and restores it when the comm handler returns. Our comm
handler waits for the sandbox (its start, a running cell), so the restore
came while a later request ran: the first cell's ``idle`` went out under the
``history_request`` or a ``comm_open``, and JupyterLab kept the cell at
``[*]``. Here each asyncio task remembers the parent it set, and
``get_parent("shell")`` and the shell ident answer from the current task's
record first, so another task's set or restore cannot change them.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from ipykernel.thread import CONTROL_THREAD_NAME

T = TypeVar("T")


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop: a helper thread
        return None


class TaskParents:
    """Mixin of SandboxKernel, before ipykernel's ``Kernel`` in the bases: per-task shell parents."""

    _shell_parent: ContextVar[dict[str, Any]]
    _shell_parent_ident: ContextVar[bytes]
    _task_parents_map: weakref.WeakKeyDictionary[asyncio.Task[Any], tuple[Any, dict[str, Any]]] | None = None

    def _task_parents(self) -> weakref.WeakKeyDictionary[asyncio.Task[Any], tuple[Any, dict[str, Any]]]:
        if self._task_parents_map is None:
            self._task_parents_map = weakref.WeakKeyDictionary()
        return self._task_parents_map

    def _task_parent(self) -> tuple[Any, dict[str, Any]] | None:
        """``(ident, parent)`` the current asyncio task set, or None (another thread, or none set)."""
        task = _current_task()
        return None if task is None else self._task_parents().get(task)

    def set_parent(self, ident: Any, parent: dict[str, Any], channel: str = "shell") -> None:
        super().set_parent(ident, parent, channel)  # type: ignore[misc]
        if channel != "control":
            task = _current_task()
            if task is not None:
                self._task_parents()[task] = (ident, parent)

    def get_parent(self, channel: str | None = None) -> dict[str, Any]:
        if channel == "shell" or (channel is None and threading.current_thread().name != CONTROL_THREAD_NAME):
            mine = self._task_parent()
            if mine is not None:
                return mine[1]
        return super().get_parent(channel)  # type: ignore[misc,no-any-return]

    def _get_shell_context_var(self, var: ContextVar[T]) -> T:
        mine = self._task_parent()
        if mine is not None:
            if var is self._shell_parent_ident:
                return mine[0]  # type: ignore[no-any-return]
            if var is self._shell_parent:
                return mine[1]  # type: ignore[return-value]
        return super()._get_shell_context_var(var)  # type: ignore[misc,no-any-return]


class InOrder:
    """Blocking calls run in a thread one after another, in the order they were asked for (event loop side).

    Who calls: :meth:`SandboxKernel.comm_request`. ipykernel dispatches a comm
    message that arrives while the shell lock is held in a task of its own, so
    a ``comm_open`` and the ``comm_msg`` right behind it (JupyterLab's widget
    manager sends both at once) would each start a delivery thread: the
    ``comm_msg`` could reach the sandbox first and be dropped there (``No such
    comm``). :meth:`run` is called in arrival order (before the handler's first
    ``await``), and each call starts only when the one before it has finished.
    """

    def __init__(self) -> None:
        self._tail: asyncio.Future[None] | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        previous, done = self._tail, asyncio.get_running_loop().create_future()
        self._tail = done
        try:
            if previous is not None:
                await asyncio.wait([previous])  # never cancels or raises for the call before
            return await asyncio.to_thread(fn)
        finally:
            done.set_result(None)
            if self._tail is done:
                self._tail = None
