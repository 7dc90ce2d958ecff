"""Functions a worker holds by reference (HOST side; the session numbers them).

A warm call's request names a function the worker already holds by a number
instead of carrying its cloudpickled bytes again. The host alone numbers the
references and clears them (``fn_reset`` in the request) with a new worker,
at :data:`FN_REFS` and after a request that may not have arrived; nothing the
worker says is relied on (a worker missing one fails that call, never
another). Who calls: :meth:`glsandbox_kernel.session.Session.request`.
"""

from __future__ import annotations

from typing import Any

#: functions a worker holds by reference (sent once per worker, then named by number)
FN_REFS = 64


class FunctionRefs:
    """Function bytes -> the reference the current worker holds them under."""

    def __init__(self) -> None:
        self._refs: dict[bytes, int] = {}
        self._generation = -1
        self._next = 0

    def __len__(self) -> int:
        return len(self._refs)

    def apply(self, msg: dict[str, Any], generation: int) -> dict[str, Any]:
        """``msg`` (a call request to the worker of ``generation``), by reference where it can be."""
        fn = msg.get("fn")
        if type(fn) is not bytes:
            return msg
        refs = self._refs
        reset = self._generation != generation
        if reset or len(refs) >= FN_REFS:
            refs.clear()
            self._generation = generation
            reset = True
        ref = refs.get(fn)
        if ref is not None:
            msg = dict(msg)  # the caller's message keeps its function bytes
            del msg["fn"]
            msg["fn_ref"] = ref
            return msg
        self._next += 1
        refs[fn] = msg["fn_ref"] = self._next
        if reset:
            msg["fn_reset"] = True
        return msg

    def settle(self, msg: dict[str, Any], reply: dict[str, Any]) -> None:
        """After the reply: a function defined by a failed call may not have loaded there; send it again."""
        if "fn" in msg and "fn_ref" in msg and not reply.get("ok", True):
            self._refs.pop(msg["fn"], None)

    def forget(self) -> None:
        """The request may not have reached the worker: start afresh (with ``fn_reset``)."""
        self._generation = -1
