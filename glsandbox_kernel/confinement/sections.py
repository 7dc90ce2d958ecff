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


class _Bad(Exception):
    """A value that does not fit; ``parts`` is its path, innermost first (built on the way out)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why
        self.parts: list[str] = []


def _bad(why: str) -> _Bad:
    return _Bad(why)


Checker = typing.Callable[[Any], Any]


@functools.cache
def _checker(tp: Any) -> Checker:
    """The check of one field type, compiled once per type (the child checks every plan)."""
    if tp is Any:

        def untyped(value: Any) -> Any:
            raise _bad("untyped field in a plan section")

        return untyped
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        _fields(tp)  # compiled now: a template that precompiles leaves its children nothing to do
        return functools.partial(_build, tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        none_ok = type(None) in args
        alternatives = [_checker(a) for a in args if a is not type(None)]
        if len(alternatives) == 1:  # X | None: X's own error says what is wrong
            only = alternatives[0]
            return (lambda v: None if v is None else only(v)) if none_ok else only

        def union(value: Any) -> Any:
            if value is None and none_ok:
                return None
            for alt in alternatives:
                with contextlib.suppress(_Bad):
                    return alt(value)
            raise _bad(f"{type(value).__name__} value fits none of {tp}")

        return union
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        kinds = {type(a) for a in allowed}

        def literal(value: Any) -> Any:
            if value in allowed and type(value) in kinds:
                return value
            raise _bad(f"{value!r} is not one of {allowed}")

        return literal
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            each = _checker(args[0])
            return lambda value: _items(value, lambda v: [each] * len(v))
        items = [_checker(a) for a in args]

        def fixed(value: Any) -> list[Checker]:
            if len(items) != len(value):
                raise _bad(f"expected {len(items)} items, got {len(value)}")
            return items

        return lambda value: _items(value, fixed)
    if origin is dict:
        key_t, val_t = (_checker(a) for a in typing.get_args(tp))

        def mapping(value: Any) -> Any:
            if not isinstance(value, dict):
                raise _bad(f"expected a mapping, got {type(value).__name__}")
            out = {}
            for k, v in value.items():
                try:
                    key = key_t(k)
                except _Bad as exc:
                    exc.parts.append("<key>")
                    raise
                try:
                    out[key] = val_t(v)
                except _Bad as exc:
                    exc.parts.append(f"[{k!r}]")
                    raise
            return out

        return mapping
    if tp in (bool, int, str):

        def scalar(value: Any) -> Any:
            if type(value) is not tp:
                raise _bad(f"expected {tp.__name__}, got {type(value).__name__}")
            return value

        return scalar
    if tp is float:

        def real(value: Any) -> Any:
            if type(value) not in (int, float):
                raise _bad(f"expected float, got {type(value).__name__}")
            return float(value)

        return real

    def unsupported(value: Any) -> Any:
        raise _bad(f"unsupported field type {tp!r}")

    return unsupported


def _items(value: Any, checkers: typing.Callable[[Any], list[Checker]]) -> tuple[Any, ...]:
    """A tuple field: ``value`` as a sequence, item ``i`` checked by ``checkers(value)[i]``."""
    if not isinstance(value, (list, tuple)):
        raise _bad(f"expected a sequence, got {type(value).__name__}")
    out = []
    for i, (chk, v) in enumerate(zip(checkers(value), value, strict=True)):
        try:
            out.append(chk(v))
        except _Bad as exc:
            exc.parts.append(f"[{i}]")
            raise
    return tuple(out)


@functools.cache
def _fields(cls: Any) -> tuple[tuple[tuple[str, Checker], ...], frozenset[str]]:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    return tuple((n, _checker(hints[n])) for n in names), frozenset(names)


def _build(cls: Any, data: Any) -> Any:
    if not isinstance(data, dict):
        raise _bad(f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fields, names = _fields(cls)
    if not names.issuperset(data):
        unknown = sorted(set(data) - names, key=str)
        raise _bad(f"unknown field(s) {', '.join(map(str, unknown))} for {cls.__name__}")
    missing = [n for n, _ in fields if n not in data]
    if missing:
        raise _bad(f"missing field(s) {', '.join(missing)} for {cls.__name__}")
    kwargs = {}
    for n, chk in fields:
        try:
            kwargs[n] = chk(data[n])
        except _Bad as exc:
            exc.parts.append(f".{n}")
            raise
    return cls(**kwargs)


def _refuse(path: str, why: str) -> ConfinementError:
    return ConfinementError("plan", f"{path}: {why}")


def from_wire(cls: type[T], data: Any, path: str = "plan") -> T:
    """Rebuild ``cls`` from :func:`to_wire` data, refusing unknown, missing or mistyped fields.

    Each field type's check is compiled once (:func:`_checker`); the path of
    a refused value (``plan.mounts.binds[3].rw``) is put together only then.
    """
    try:
        return cast(T, _build(cls, data))
    except _Bad as exc:
        raise _refuse(path + "".join(reversed(exc.parts)), exc.why) from None


def precompile(cls: type) -> None:
    """TEMPLATE side: compile the checks of ``cls`` and every nested section before forking."""
    _fields(cls)
