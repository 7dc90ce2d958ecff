"""Columnar encoding of homogeneous containers for :mod:`glsandbox_kernel.codec` (both sides).

A list, tuple, set or frozenset of at least :data:`MIN_ITEMS` ints, floats
or strs, and a dict whose keys are such a column, travel as columns: ints
and floats as one little-endian int64/float64 array, strs as their
NUL-joined UTF-8 text. Encoding and decoding then run at C speed
(``array``, ``str.split``, ``dict(zip(...))``) instead of one Python step
per item. The worker encodes (:func:`encode_seq`, :func:`encode_dict`),
falling back to the item-by-item tags whenever a container does not fit
(mixed types, ints past 64 bits, a str containing NUL).

Host side, :func:`decode` keeps the codec's budget exactly: the object
count and the estimated host memory of the whole column are charged, and
checked, *before* any item is built (the item-by-item charges summed up);
int and float set members and dict keys are checked for hash floods before
the container is built (str columns need no check: a str hash is a 64-bit
SipHash, and a flood needs dozens of strs with one full hash value, out of
reach even for a worker that knew the key); malformed columns raise
SandboxSecurityError.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable
from typing import Any

from .exceptions import SandboxSecurityError

#: containers shorter than this keep the item-by-item tags
MIN_ITEMS = 64
#: ``L`` + container tag + kind + count + column; ``K`` + key kind + value kind + count + columns
TAGS = (b"L", b"K")
_KIND = {int: b"i", float: b"f", str: b"s"}
_pack_I = struct.Struct(">I").pack
_unpack_I = struct.Struct(">I").unpack_from
_BIG = sys.byteorder == "big"

#: estimated host bytes per item, the slot holding it included (as codec's item-by-item charges)
_ITEM_COST = {b"i": 40, b"f": 32, b"s": 57}


def _kind_of(items: Any) -> bytes | None:
    types = set(map(type, items))
    if len(types) != 1:
        return None
    return _KIND.get(types.pop())


def _column(kind: bytes, items: Any, n: int) -> bytes | None:
    """``items`` as one column's bytes (u32 length + data), or None when they do not fit."""
    if kind == b"s":
        joined = "\0".join(items)
        if joined.count("\0") != n - 1:
            return None
        raw = joined.encode("utf-8", "surrogatepass")
    else:
        try:
            arr = array("q" if kind == b"i" else "d", items)
        except OverflowError:
            return None
        if _BIG:
            arr.byteswap()
        raw = arr.tobytes()
    return _pack_I(len(raw)) + raw


def encode_seq(v: Any, seq_tag: bytes, out: list[Any]) -> bool:
    """Worker side: append ``v`` as a column and return True, or return False (use the generic tags)."""
    items = v if type(v) in (list, tuple) else list(v)
    kind = _kind_of(items)
    if kind is None:
        return False
    col = _column(kind, items, len(items))
    if col is None:
        return False
    out.append(b"L" + seq_tag + kind + _pack_I(len(items)) + col)
    return True


def encode_dict(v: dict[Any, Any], out: list[Any]) -> bool:
    """Worker side: a dict with a column of keys and a column of values, if both fit."""
    keys, values = list(v), list(v.values())
    kk, vk = _kind_of(keys), _kind_of(values)
    if kk is None or vk is None:
        return False
    kcol = _column(kk, keys, len(keys))
    vcol = _column(vk, values, len(values)) if kcol is not None else None
    if kcol is None or vcol is None:
        return False
    out.append(b"K" + kk + vk + _pack_I(len(keys)) + kcol + vcol)
    return True


def _read_column(r: Any, kind: bytes, n: int) -> list[Any]:
    """Host side: one column of ``n`` items (the budget was charged by the caller)."""
    size = r.u32()
    raw = r.take(size)
    if kind == b"s":
        if n == 0 or size < n - 1:
            raise SandboxSecurityError("malformed value: str column shorter than its count")
        try:
            items = bytes(raw).decode("utf-8", "surrogatepass").split("\0")
        except UnicodeDecodeError as exc:
            raise SandboxSecurityError("malformed value: invalid UTF-8") from exc
        if len(items) != n:
            raise SandboxSecurityError("malformed value: str column does not hold its count")
        return items
    if kind not in (b"i", b"f"):
        raise SandboxSecurityError(f"malformed value: unknown column kind {kind!r}")
    if size != 8 * n:
        raise SandboxSecurityError("malformed value: number column does not hold its count")
    arr = array("q" if kind == b"i" else "d")
    arr.frombytes(raw)
    if _BIG:
        arr.byteswap()
    return arr.tolist()


def _charge(r: Any, n: int, cost: int, data_bytes: int) -> None:
    """Count ``n`` objects of ``cost`` estimated bytes (plus their text) before building them; check."""
    r.objects += n
    r.cost += cost + data_bytes
    r.check()


def decode(r: Any, tag: bytes, check_hashes: Callable[[list[Any], str], None]) -> Any:
    """Host side: the container after an ``L`` or ``K`` tag; hostile data, decoded under ``r``'s budget."""
    if tag == b"L":
        seq, kind = bytes(r.take(1)), bytes(r.take(1))
        n = r.u32()
        if seq not in (b"l", b"t", b"S", b"Z") or kind not in _ITEM_COST:
            raise SandboxSecurityError("malformed value: bad column header")
        if n > r.end - r.pos:
            raise SandboxSecurityError("malformed value: count larger than the data")
        head = 56 + 8 * n if seq in (b"l", b"t") else 216 + 32 * n
        text = _peek_size(r) if kind == b"s" else 0
        _charge(r, n, head + _ITEM_COST[kind] * n, text)
        items = _read_column(r, kind, n)
        if seq == b"l":
            return items
        if seq == b"t":
            return tuple(items)
        if kind != b"s":
            check_hashes(items, "set member")
        return set(items) if seq == b"S" else frozenset(items)
    kk, vk = bytes(r.take(1)), bytes(r.take(1))
    n = r.u32()
    if kk not in _ITEM_COST or vk not in _ITEM_COST:
        raise SandboxSecurityError("malformed value: bad column header")
    if n > r.end - r.pos:
        raise SandboxSecurityError("malformed value: count larger than the data")
    ktext = _peek_size(r) if kk == b"s" else 0
    _charge(r, 2 * n, 64 + 48 * n + (_ITEM_COST[kk] + _ITEM_COST[vk]) * n, ktext)
    keys = _read_column(r, kk, n)
    if vk == b"s":
        _charge(r, 0, 0, _peek_size(r))
    values = _read_column(r, vk, n)
    if kk != b"s":
        check_hashes(keys, "dict key")
    return dict(zip(keys, values, strict=True))


def _peek_size(r: Any) -> int:
    """The byte size of the column that starts at the reader's position (not consumed)."""
    if r.pos + 4 > r.end:
        raise SandboxSecurityError("malformed value: truncated length")
    return int(_unpack_I(r.buf, r.pos)[0])
