"""The restricted value codec used on the wire in both directions.

Both sides import this module. The worker encodes results and messages with
:func:`encode`; the host decodes them with :func:`decode`, which knows only a
fixed set of tags and never imports or calls anything named by the data, so a
hostile worker can at worst make decoding fail with
:class:`~glsandbox_kernel.exceptions.SandboxSecurityError`. This replaces
``pickle.loads`` on the host entirely: no ``__reduce__`` of a sandbox object
ever runs host-side.

Allowed types: None, bool, int, float, complex, str, bytes, bytearray, list,
tuple, dict, set, frozenset, datetime/date/time/timedelta, Decimal, Fraction,
and numpy arrays/scalars (non-object dtypes) and pandas Series/DataFrame/Index
when those libraries are installed.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import fractions
import struct
import sys
from typing import Any

from .exceptions import SandboxSecurityError

MAX_DEPTH = 200

_pack_q = struct.Struct(">q").pack
_unpack_q = struct.Struct(">q").unpack_from
_pack_d = struct.Struct(">d").pack
_unpack_d = struct.Struct(">d").unpack_from
_pack_I = struct.Struct(">I").pack
_unpack_I = struct.Struct(">I").unpack_from


class UnsupportedType(TypeError):
    """Raised by :func:`encode` for a value outside the allowlist (worker side)."""

    def __init__(self, typename: str) -> None:
        super().__init__(f"type {typename} cannot leave the sandbox (not in the result allowlist)")
        self.typename = typename


_SEQ_TAGS: dict[type, bytes] = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}


def _qualname(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def encode(value: Any) -> bytes:
    """Encode ``value`` (allowlisted types only) to bytes; raise UnsupportedType otherwise."""
    out: list[bytes] = []
    _enc(value, out, 0)
    return b"".join(out)


def _enc(v: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise UnsupportedType(f"nesting deeper than {MAX_DEPTH}")
    t = type(v)
    if v is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if v else b"F")
    elif t is int:
        if -(2**63) <= v < 2**63:
            out.append(b"i" + _pack_q(v))
        else:
            raw = v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)
            out.append(b"I" + _pack_I(len(raw)) + raw)
    elif t is float:
        out.append(b"f" + _pack_d(v))
    elif t is str:
        raw = v.encode("utf-8", "surrogatepass")
        out.append(b"s" + _pack_I(len(raw)) + raw)
    elif t is bytes or t is bytearray:
        raw = bytes(v)
        out.append((b"b" if t is bytes else b"B") + _pack_I(len(raw)) + raw)
    elif t is list or t is tuple or t is set or t is frozenset:
        tag = _SEQ_TAGS[t]
        out.append(tag + _pack_I(len(v)))
        for item in v:
            _enc(item, out, depth + 1)
    elif t is dict:
        out.append(b"d" + _pack_I(len(v)))
        for key, item in v.items():
            _enc(key, out, depth + 1)
            _enc(item, out, depth + 1)
    elif t is complex:
        out.append(b"c" + _pack_d(v.real) + _pack_d(v.imag))
    elif t is _dt.datetime:
        _enc_str(b"D", v.isoformat(), out)
    elif t is _dt.date:
        _enc_str(b"a", v.isoformat(), out)
    elif t is _dt.time:
        _enc_str(b"m", v.isoformat(), out)
    elif t is _dt.timedelta:
        out.append(b"e" + _pack_q(v.days) + _pack_q(v.seconds) + _pack_q(v.microseconds))
    elif t is decimal.Decimal:
        _enc_str(b"q", str(v), out)
    elif t is fractions.Fraction:
        out.append(b"r")
        _enc(v.numerator, out, depth + 1)
        _enc(v.denominator, out, depth + 1)
    else:
        _enc_optional(v, out, depth)


def _enc_str(tag: bytes, text: str, out: list[bytes]) -> None:
    raw = text.encode("utf-8")
    out.append(tag + _pack_I(len(raw)) + raw)


def _enc_optional(v: Any, out: list[bytes], depth: int) -> None:
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(v, np.ndarray) and type(v) is np.ndarray:
            if v.dtype.hasobject:
                raise UnsupportedType("numpy.ndarray with object dtype")
            arr = np.ascontiguousarray(v)
            out.append(b"n")
            _enc_str(b"s", arr.dtype.str, out)
            _enc(tuple(int(x) for x in arr.shape), out, depth + 1)
            raw = arr.tobytes()
            out.append(b"b" + _pack_I(len(raw)) + raw)
            return
        if isinstance(v, np.generic) and not isinstance(v, np.object_):
            out.append(b"g")
            _enc_str(b"s", v.dtype.str, out)
            raw = v.tobytes()
            out.append(b"b" + _pack_I(len(raw)) + raw)
            return
    pd = sys.modules.get("pandas")
    if pd is not None:
        if type(v) is pd.DataFrame:
            out.append(b"P")
            _enc(
                {
                    "columns": [_column(v[c]) for c in v.columns],
                    "names": list(v.columns),
                    "index": _column(v.index.to_series()),
                    "index_name": v.index.name,
                },
                out,
                depth + 1,
            )
            return
        if type(v) is pd.Series:
            out.append(b"R")
            _enc(
                {
                    "values": _column(v),
                    "name": v.name,
                    "index": _column(v.index.to_series()),
                    "index_name": v.index.name,
                },
                out,
                depth + 1,
            )
            return
        if isinstance(v, pd.Index) and type(v) in (pd.Index, pd.RangeIndex):
            out.append(b"X")
            _enc({"values": _column(v.to_series()), "name": v.name}, out, depth + 1)
            return
    raise UnsupportedType(_qualname(v))


def _column(series: Any) -> Any:
    """A pandas column as a numpy array (plain dtypes) or a list of allowed scalars."""
    values = series.to_numpy()
    if values.dtype.hasobject:
        return list(values.tolist())
    return values


class _Reader:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = memoryview(buf)
        self.pos = 0
        self.end = len(buf)

    def take(self, n: int) -> memoryview:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise SandboxSecurityError("malformed value: truncated data")
        self.pos = p + n
        return self.buf[p : p + n]

    def u32(self) -> int:
        p = self.pos
        if p + 4 > self.end:
            raise SandboxSecurityError("malformed value: truncated length")
        self.pos = p + 4
        return int(_unpack_I(self.buf, p)[0])

    def text(self) -> str:
        n = self.u32()
        try:
            return bytes(self.take(n)).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise SandboxSecurityError("malformed value: invalid UTF-8") from exc


def decode(data: bytes | memoryview) -> Any:
    """Decode bytes made by :func:`encode`. Host side: treats ``data`` as hostile."""
    r = _Reader(data)
    value = _dec(r, 0)
    if r.pos != r.end:
        raise SandboxSecurityError("malformed value: trailing bytes after the value")
    return value


def _dec(r: _Reader, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise SandboxSecurityError("malformed value: nesting too deep")
    tag = bytes(r.take(1))
    if tag == b"N":
        return None
    if tag == b"T":
        return True
    if tag == b"F":
        return False
    if tag == b"i":
        return _unpack_q(r.take(8))[0]
    if tag == b"I":
        n = r.u32()
        return int.from_bytes(r.take(n), "big", signed=True)
    if tag == b"f":
        return _unpack_d(r.take(8))[0]
    if tag == b"s":
        return r.text()
    if tag == b"b":
        return bytes(r.take(r.u32()))
    if tag == b"B":
        return bytearray(r.take(r.u32()))
    if tag in (b"l", b"t", b"S", b"Z"):
        n = r.u32()
        if n > r.end - r.pos:
            raise SandboxSecurityError("malformed value: count larger than the data")
        items = [_dec(r, depth + 1) for _ in range(n)]
        if tag == b"l":
            return items
        if tag == b"t":
            return tuple(items)
        try:
            return set(items) if tag == b"S" else frozenset(items)
        except TypeError as exc:
            raise SandboxSecurityError("malformed value: unhashable set member") from exc
    if tag == b"d":
        n = r.u32()
        if n > r.end - r.pos:
            raise SandboxSecurityError("malformed value: count larger than the data")
        out: dict[Any, Any] = {}
        for _ in range(n):
            key = _dec(r, depth + 1)
            try:
                out[key] = _dec(r, depth + 1)
            except TypeError as exc:
                raise SandboxSecurityError("malformed value: unhashable dict key") from exc
        return out
    if tag == b"c":
        return complex(_unpack_d(r.take(8))[0], _unpack_d(r.take(8))[0])
    try:
        if tag == b"D":
            return _dt.datetime.fromisoformat(r.text())
        if tag == b"a":
            return _dt.date.fromisoformat(r.text())
        if tag == b"m":
            return _dt.time.fromisoformat(r.text())
        if tag == b"e":
            return _dt.timedelta(
                days=_unpack_q(r.take(8))[0],
                seconds=_unpack_q(r.take(8))[0],
                microseconds=_unpack_q(r.take(8))[0],
            )
        if tag == b"q":
            return decimal.Decimal(r.text())
        if tag == b"r":
            num, den = _dec(r, depth + 1), _dec(r, depth + 1)
            if type(num) is not int or type(den) is not int:
                raise SandboxSecurityError("malformed value: Fraction needs two ints")
            return fractions.Fraction(num, den)
    except (ValueError, OverflowError, ArithmeticError, ZeroDivisionError) as exc:
        raise SandboxSecurityError(f"malformed value for tag {tag!r}: {exc}") from exc
    if tag in (b"n", b"g"):
        return _dec_numpy(r, tag, depth)
    if tag in (b"P", b"R", b"X"):
        return _dec_pandas(r, tag, depth)
    raise SandboxSecurityError(f"malformed value: unknown tag {tag!r}")


def _dec_numpy(r: _Reader, tag: bytes, depth: int) -> Any:
    try:
        import numpy as np
    except ImportError:
        raise SandboxSecurityError("the sandbox returned a numpy value but numpy is not installed here") from None
    if bytes(r.take(1)) != b"s":
        raise SandboxSecurityError("malformed numpy value")
    dtype_str = r.text()
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise SandboxSecurityError(f"malformed numpy dtype {dtype_str!r}") from exc
    if dtype.hasobject:
        raise SandboxSecurityError("numpy object dtype refused")
    shape: Any = None
    if tag == b"n":
        shape = _dec(r, depth + 1)
        if type(shape) is not tuple or not all(type(x) is int and x >= 0 for x in shape):
            raise SandboxSecurityError("malformed numpy shape")
    if bytes(r.take(1)) != b"b":
        raise SandboxSecurityError("malformed numpy value")
    raw = bytes(r.take(r.u32()))
    try:
        if tag == b"g":
            return np.frombuffer(raw, dtype=dtype)[0]
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except (ValueError, IndexError) as exc:
        raise SandboxSecurityError(f"malformed numpy data: {exc}") from exc


def _dec_pandas(r: _Reader, tag: bytes, depth: int) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise SandboxSecurityError("the sandbox returned a pandas value but pandas is not installed here") from None
    spec = _dec(r, depth + 1)
    if type(spec) is not dict:
        raise SandboxSecurityError("malformed pandas value")
    try:
        if tag == b"X":
            return pd.Index(spec["values"], name=spec["name"])
        index = pd.Index(spec["index"], name=spec["index_name"])
        if tag == b"R":
            return pd.Series(spec["values"], index=index, name=spec["name"])
        cols = spec["columns"]
        names = spec["names"]
        if type(cols) is not list or type(names) is not list or len(cols) != len(names):
            raise SandboxSecurityError("malformed pandas DataFrame")
        frame = pd.DataFrame({i: c for i, c in enumerate(cols)}, index=index)
        frame.columns = pd.Index(names)
        return frame
    except (KeyError, TypeError, ValueError) as exc:
        raise SandboxSecurityError(f"malformed pandas value: {exc}") from exc
