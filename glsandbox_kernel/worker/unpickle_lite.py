"""Load the host's cloudpickled function without importing cloudpickle (SANDBOX side).

A function pickled by value names a handful of cloudpickle's helpers
(``_make_function``, ``_builtin_type``, ``_function_setstate``, cells,
``subimport``); importing cloudpickle for them pulls logging, inspect,
dataclasses, platform, uuid and more, which a fresh container pays before
its first reply. :func:`loads` resolves exactly those helpers to the copies
below (the same code as cloudpickle 3.x, building the same plain functions)
and any other name the usual way, which imports cloudpickle itself (classes,
enums, everything with state kept in cloudpickle's own trackers). Once
cloudpickle is imported (a pooled worker imports it while idle), callers use
``pickle.loads`` as before.

The sender is the host (trusted); this is not a restricted unpickler.
Who calls: :meth:`glsandbox_kernel.worker.loop.Worker._function`.
"""

from __future__ import annotations

import builtins
import io
import pickle
import sys
import types
from typing import Any

_CP = "cloudpickle.cloudpickle"


def _real_empty_cell_value() -> Any:
    mod = sys.modules.get(_CP)
    return getattr(mod, "_empty_cell_value", None) if mod is not None else None


def _make_function(code: Any, globals: dict[str, Any], name: str, argdefs: Any, closure: Any) -> Any:
    globals["__builtins__"] = builtins.__dict__
    return types.FunctionType(code, globals, name, argdefs, closure)


def _make_empty_cell() -> Any:
    if False:  # a free variable that is never bound: the lambda's cell stays empty
        cell: Any = None
    return (lambda: cell).__closure__[0]  # type: ignore[index]


_EMPTY = object()


def _make_cell(value: Any = _EMPTY) -> Any:
    cell = _make_empty_cell()
    if value is not _EMPTY and not (value is not None and value is _real_empty_cell_value()):
        cell.cell_contents = value
    return cell


def _builtin_type(name: str) -> Any:
    return type if name == "ClassType" else getattr(types, name)


def subimport(name: str) -> Any:
    __import__(name)
    return sys.modules[name]


def _function_setstate(obj: Any, state: Any) -> None:
    state, slotstate = state
    obj.__dict__.update(state)
    obj_globals = slotstate.pop("__globals__")
    obj_closure = slotstate.pop("__closure__")
    slotstate.pop("_cloudpickle_submodules")
    obj.__globals__.update(obj_globals)
    obj.__globals__["__builtins__"] = builtins.__dict__
    if obj_closure is not None:
        for i, cell in enumerate(obj_closure):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            obj.__closure__[i].cell_contents = value
    for k, v in slotstate.items():
        setattr(obj, k, v)


_HELPERS = {
    "_make_function": _make_function,
    "_make_empty_cell": _make_empty_cell,
    "_make_cell": _make_cell,
    "_builtin_type": _builtin_type,
    "subimport": subimport,
    "_function_setstate": _function_setstate,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == _CP:
            helper = _HELPERS.get(name)
            if helper is not None:
                return helper
        return super().find_class(module, name)


def loads(data: bytes) -> Any:
    """``cloudpickle.loads(data)``, importing cloudpickle only when the pickle needs more than its function helpers."""
    if "cloudpickle" in sys.modules:
        return pickle.loads(data)
    return _Unpickler(io.BytesIO(data)).load()
