"""Plan sections on the wire: ``dataclasses.asdict`` out, a schema-checked rebuild in.

Every confinement step plans a frozen dataclass on the HOST side; the plan
crosses to the zygote's forked child in a frame as plain data
(:func:`to_wire`) and is rebuilt there by :func:`from_wire`, which checks it
against the dataclass's own annotations: an unknown field, a missing field
or a value of the wrong type is refused with a :class:`ConfinementError`
naming the path (``plan.mounts.binds[3].rw``). Supported field types: the
scalars (bool, int, float, str), None unions, ``tuple[X, ...]``,
``dict[str, X]``, ``Literal[...]`` and nested frozen dataclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import types
import typing
from typing import Any, TypeVar, cast

from ._common import ConfinementError

T = TypeVar("T")


def to_wire(section: Any) -> Any:
    """A section (or plan) as plain data for a frame: dicts, tuples, scalars."""
    return dataclasses.asdict(section)


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _refuse(path: str, why: str) -> ConfinementError:
    return ConfinementError("plan", f"{path}: {why}")


def _check(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        raise _refuse(path, "untyped field in a plan section")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_wire(tp, value, path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        alternatives = [a for a in args if a is not type(None)]
        if len(alternatives) == 1:  # X | None: X's own error says what is wrong
            return _check(alternatives[0], value, path)
        for arg in alternatives:
            with contextlib.suppress(ConfinementError):
                return _check(arg, value, path)
        raise _refuse(path, f"{type(value).__name__} value fits none of {tp}")
    if origin is typing.Literal:
        if value in typing.get_args(tp) and type(value) in {type(a) for a in typing.get_args(tp)}:
            return value
        raise _refuse(path, f"{value!r} is not one of {typing.get_args(tp)}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _refuse(path, f"expected a sequence, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise _refuse(path, f"expected {len(args)} items, got {len(value)}")
        return tuple(_check(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise _refuse(path, f"expected a mapping, got {type(value).__name__}")
        return {_check(key_t, k, f"{path}<key>"): _check(val_t, v, f"{path}[{k!r}]") for k, v in value.items()}
    if tp is bool:
        if type(value) is not bool:
            raise _refuse(path, f"expected bool, got {type(value).__name__}")
        return value
    if tp is int:
        if type(value) is not int:
            raise _refuse(path, f"expected int, got {type(value).__name__}")
        return value
    if tp is float:
        if type(value) not in (int, float):
            raise _refuse(path, f"expected float, got {type(value).__name__}")
        return float(value)
    if tp is str:
        if type(value) is not str:
            raise _refuse(path, f"expected str, got {type(value).__name__}")
        return value
    raise _refuse(path, f"unsupported field type {tp!r}")


def from_wire(cls: type[T], data: Any, path: str = "plan") -> T:
    """Rebuild ``cls`` from :func:`to_wire` data, refusing unknown, missing or mistyped fields."""
    if not isinstance(data, dict):
        raise _refuse(path, f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = _hints(cast(Any, cls))
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise _refuse(path, f"unknown field(s) {', '.join(map(str, unknown))} for {cls.__name__}")
    missing = [n for n in names if n not in data]
    if missing:
        raise _refuse(path, f"missing field(s) {', '.join(missing)} for {cls.__name__}")
    return cls(**{n: _check(hints[n], data[n], f"{path}.{n}") for n in names})
