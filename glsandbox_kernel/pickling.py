"""Host-to-worker pickling of calls (HOST side; the host is the trusted sender).

Who calls: :meth:`glsandbox_kernel.sandbox.OSSandbox.execute` builds each
call's request here. Functions are cloudpickled once per function object;
arguments with protocol 5, so large buffers (numpy data) travel out of band,
sent from their own memory. Nothing here decodes what the worker sends: the
way back is the restricted codec (:mod:`glsandbox_kernel.codec`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import weakref
from collections.abc import Callable
from typing import Any

_pickle_cache: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def _dumps_function(fn: Callable[..., Any]) -> bytes:
    """cloudpickle ``fn`` once per function object (host to worker is trusted)."""
    try:
        cached = _pickle_cache.get(fn)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    import cloudpickle

    _by_value_outside_environment(fn)
    data: bytes = cloudpickle.dumps(fn)
    try:
        _pickle_cache[fn] = data
    except TypeError:
        pass
    return data


def _by_value_outside_environment(fn: Callable[..., Any]) -> None:
    """A function whose module lies outside the Python environment (a script's or a test's
    folder, which the sandbox does not see) travels by value, not as an import the worker
    cannot resolve (see :func:`glsandbox_kernel.project.environment_paths`)."""

    import cloudpickle

    from .project import environment_paths

    mod = sys.modules.get(getattr(fn, "__module__", None) or "")
    path = getattr(mod, "__file__", None)
    if mod is None or not isinstance(path, str) or mod.__name__ == "__main__":
        return
    real = os.path.realpath(path)
    if not any(real.startswith(p.rstrip("/") + "/") for p in environment_paths()):
        cloudpickle.register_pickle_by_value(mod)


#: argument types the C pickler writes exactly as cloudpickle would (no function, class or module inside)
_PLAIN_ARGS = frozenset({int, float, str, bytes, bool, type(None)})


def sha256_parts(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


#: the hash state after the last function's bytes: a warm call repeats its function
_fn_prefix: tuple[bytes, Any] | None = None


def call_provenance(fn_bytes: bytes, arg_bytes: bytes, config_bytes: bytes) -> str:
    """``sha256_parts(fn_bytes, arg_bytes, config_bytes)``, hashing a repeated function's bytes once."""
    global _fn_prefix
    cached = _fn_prefix  # one read: another thread may replace it meanwhile
    if cached is not None and cached[0] is fn_bytes:
        h = cached[1].copy()
    else:
        h = hashlib.sha256()
        h.update(len(fn_bytes).to_bytes(8, "big"))
        h.update(fn_bytes)
        _fn_prefix = (fn_bytes, h.copy())
    h.update(len(arg_bytes).to_bytes(8, "big"))
    h.update(arg_bytes)
    h.update(len(config_bytes).to_bytes(8, "big"))
    h.update(config_bytes)
    return h.hexdigest()


def call_message(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, script: bool = False
) -> tuple[dict[str, Any], bytes, bytes]:
    """The ``call`` request for ``fn(*args, **kwargs)``, with the function's and the arguments' bytes."""
    fn_bytes = _dumps_function(fn)
    buffers: list[pickle.PickleBuffer] = []
    if not args and not kwargs:
        arg_bytes = b""
    elif not kwargs and all(type(a) in _PLAIN_ARGS for a in args):
        # the usual warm call (a few scalars): the C pickler, without building a cloudpickle Pickler
        arg_bytes = pickle.dumps((args, kwargs), protocol=5)
    else:
        import cloudpickle

        arg_bytes = cloudpickle.dumps((args, kwargs), protocol=5, buffer_callback=buffers.append)
    msg: dict[str, Any] = {"type": "call", "fn": fn_bytes, "args": arg_bytes}
    if buffers:
        msg["buffers"] = [b.raw() for b in buffers]
    if script:
        msg["script"] = True
    return msg, fn_bytes, arg_bytes
