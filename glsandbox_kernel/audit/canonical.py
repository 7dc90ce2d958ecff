"""RFC 8785 JSON Canonicalization Scheme (JCS): the bytes every hash and signature covers (host side).

Who calls: :func:`glsandbox_kernel.audit.records.canonical_json` (records,
provenance, notebook evidence, attestations). A value hashed here hashes the
same after any JSON round trip — Python's ``json``, JavaScript's
``JSON.parse``/``JSON.stringify`` (JupyterLab saving a notebook), nbformat:

- object keys sorted by their UTF-16 code units, no whitespace, UTF-8;
- strings escaped as ECMAScript's ``JSON.stringify`` does (``\\"``, ``\\\\``,
  ``\\b \\f \\n \\r \\t``, other C0 controls as ``\\u00xx``, nothing else);
- numbers as IEEE doubles written by ECMAScript's ``Number.prototype.toString``:
  ``60.0`` and ``60`` are both ``60``, ``1e-7`` is ``1e-7``, ``1e21`` is
  ``1e+21``. Integers beyond 2**53 are written as the double JavaScript would
  read them, so a notebook that went through a browser still verifies;
- NaN and infinities are refused (``ValueError``): JSON has none.

Non-JSON values a config may hold (enums, paths, bytes, sets, dataclasses)
are converted by ``default`` first.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

_SAFE_INT = 2**53


def js_number(value: float) -> str:
    """``value`` as ECMAScript's ``Number.prototype.toString`` writes it (RFC 8785 section 3.2.2.3)."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a JSON number (RFC 8785 has no NaN or Infinity)")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() is the shortest decimal that reads back as the same double, as ECMAScript requires.
    _s, digit_tuple, exponent = decimal.Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    # value = 0.<digits> * 10**n
    n = exponent + len("".join(map(str, digit_tuple)))
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def jcs_dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``obj`` (see the module docstring)."""
    parts: list[str] = []
    _encode(obj, parts, default, 0)
    return "".join(parts).encode("utf-8", "surrogatepass")


_MAX_DEPTH = 200


def _encode(obj: Any, out: list[str], default: Callable[[Any], Any] | None, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("JSON value nested too deeply to canonicalise")
    if isinstance(obj, str):
        out.append(encode_basestring(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        if -_SAFE_INT <= obj <= _SAFE_INT:
            out.append(str(obj))
        else:
            try:
                out.append(js_number(float(obj)))
            except OverflowError:
                raise ValueError("int beyond a double's range is not a JSON number (RFC 8785)") from None
    elif isinstance(obj, float):
        out.append(js_number(obj))
    elif isinstance(obj, Mapping):
        items = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings for JSON, got {type(key).__name__}")
            items.append((_utf16_key(key), key, value))
        items.sort(key=lambda item: item[0])
        out.append("{")
        for i, (_k, key, value) in enumerate(items):
            if i:
                out.append(",")
            out.append(encode_basestring(key))
            out.append(":")
            _encode(value, out, default, depth + 1)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _encode(value, out, default, depth + 1)
        out.append("]")
    elif default is not None:
        _encode(default(obj), out, default, depth + 1)
    else:
        raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


__all__ = ["jcs_dumps", "js_number"]
