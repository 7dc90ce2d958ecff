"""RFC 8785 (JCS) bytes of plain JSON data, fast for the audit record's fixed shape (host side).

Who calls: :func:`.records.fast_canonical_json` (so :class:`.log.AuditLog` sealing a call's
record, provenance hashes, notebook evidence). :func:`.canonical.jcs_dumps` stays the
reference: :func:`encode` writes the same bytes wherever it answers (tests compare both on
generated data) and answers None where a shortcut does not hold, for the caller to take the
reference path: a key that is not ASCII (code-point order is UTF-16 order only for ASCII), an
int beyond 2**53, NaN or an infinity, a type other than dict, list, str, int, float, bool and
None (subclasses included), nesting deeper than 64, or text that is not valid UTF-8.

Why it is fast: a record's dicts come in a few key sets (its top level, the metrics, a call's
``extra``), so each key set's sorted order and ``"key":`` prefixes are worked out once and
kept; scalars are written inline in one loop (no call per value), strings by the C escaper
the reference uses, and the float that recurs in a record (``execution_time``, top level and
metrics) is written once.
"""

from __future__ import annotations

from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from .canonical import js_number

_SAFE_INT = 2**53
_MAX_DEPTH = 64
_MAX_SHAPES = 512  #: key sets kept (a record has three or four; others are encoded without keeping theirs)

#: key tuple (insertion order) -> ((key, '"key":' with the separator before it), ...) in JCS order
_SHAPES: dict[tuple[Any, ...], tuple[tuple[str, str], ...]] = {}
#: the last two floats written and their texts (held, so ``is`` means the same value): a record's
#: ``execution_time`` recurs in its metrics after ``cpu_time_used``
_last_floats: tuple[float, str, float, str] = (0.0, "0", 0.0, "0")


class _Slow(Exception):
    """A value the shortcut does not cover: the caller takes the reference path."""


def encode(obj: Any) -> bytes | None:
    """The JCS bytes of ``obj``, or None where :func:`.canonical.jcs_dumps` must decide."""
    try:
        return _value(obj, 0).encode("utf-8")
    except (_Slow, UnicodeError, RecursionError):
        return None


def _shape(keys: tuple[Any, ...]) -> tuple[tuple[str, str], ...]:
    """The JCS order of a dict's keys and the text before each value (checked: ASCII str keys)."""
    shape = _SHAPES.get(keys)
    if shape is not None:
        return shape
    for k in keys:
        if type(k) is not str or not k.isascii():
            raise _Slow
    ordered = sorted(keys)
    shape = tuple((k, ("{" if i == 0 else ",") + encode_basestring(k) + ":") for i, k in enumerate(ordered))
    if len(_SHAPES) < _MAX_SHAPES:
        _SHAPES[keys] = shape
    return shape


def _float(v: float) -> str:
    """ECMAScript's text of a finite float (as the reference's :func:`.canonical.js_number`)."""
    global _last_floats
    last = _last_floats
    if v is last[0]:
        return last[1]
    if v is last[2]:
        return last[3]
    a = abs(v)
    if 1e-4 <= a < 1e16:  # repr and ECMAScript agree here, but for integral values (60.0 -> 60)
        text = repr(v) if not v.is_integer() else str(int(v))
    elif a == 0.0:
        text = "0"
    elif a != a or a == float("inf"):
        raise _Slow
    else:
        text = _small_or_large(v)
    _last_floats = (v, text, last[0], last[1])
    return text


def _small_or_large(v: float) -> str:
    """Below 1e-4 from ``repr`` alone (no Decimal); 1e16 and beyond by :func:`.canonical.js_number`."""
    text = repr(v)
    mantissa, _, exp = text.partition("e")
    e = int(exp) if exp else 0
    if e >= 0:
        return js_number(v)
    sign = ""
    if mantissa[0] == "-":
        sign, mantissa = "-", mantissa[1:]
    if e >= -6:  # ECMAScript writes 1e-6 <= |x| < 1e-4 without an exponent: 0.0000<digits>
        return sign + "0." + "0" * (-e - 1) + mantissa.replace(".", "")
    return f"{sign}{mantissa}e{e}"  # ECMAScript's exponent has no leading zero: 1.5e-7


def _value(v: Any, depth: int) -> str:
    t = type(v)
    if t is dict:
        if not v:
            return "{}"
        if depth > _MAX_DEPTH:
            raise _Slow
        parts = []
        for k, pre in _shape(tuple(v)):
            x = v[k]
            if x is None:  # most of a call's metrics
                parts.append(pre + "null")
                continue
            tx = type(x)
            if tx is str:
                parts.append(pre + encode_basestring(x))
            elif tx is int:
                if not -_SAFE_INT <= x <= _SAFE_INT:
                    raise _Slow
                parts.append(pre + str(x))
            elif tx is float:
                parts.append(pre + _float(x))
            elif tx is bool:
                parts.append(pre + ("true" if x else "false"))
            else:
                parts.append(pre + _value(x, depth + 1))
        parts.append("}")
        return "".join(parts)
    if t is list:
        if not v:
            return "[]"
        if depth > _MAX_DEPTH:
            raise _Slow
        return "[" + ",".join([_value(x, depth + 1) for x in v]) + "]"
    if t is str:
        return encode_basestring(v)  # type: ignore[no-any-return]
    if v is None:
        return "null"
    if t is int:
        if not -_SAFE_INT <= v <= _SAFE_INT:
            raise _Slow
        return str(v)
    if t is float:
        return _float(v)
    if t is bool:
        return "true" if v else "false"
    raise _Slow
