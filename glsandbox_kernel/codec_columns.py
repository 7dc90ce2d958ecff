"""Columnar encoding of homogeneous containers for :mod:`glsandbox_kernel.codec` (both sides).

A list, tuple, set or frozenset of at least :data:`MIN_ITEMS` ints, floats
or strs, a dict whose keys are such a column, and a pandas column of strs
(an object array, the ``O`` container) travel as columns: ints and floats
as one little-endian int64/float64 array, strs as their NUL-joined UTF-8
text. Encoding and decoding then run at C speed (``array``, ``str.split``,
``dict.update(zip(...))``) instead of one Python step per item.

The worker encodes (:func:`encode_seq`, :func:`encode_dict`) in pieces of
:data:`PIECE` items, each a part of its own (the channel writes them as they
are): no list of the whole container, no copy of the whole text, beside the
value. It falls back to the item-by-item tags whenever a container does not
fit (mixed types, ints past 64 bits, a str containing NUL).

Host side, :func:`decode` keeps the codec's budget exactly: the object
count and the estimated host memory of the whole column are charged, and
checked, *before* any item is built (the item-by-item charges summed up);
text is then decoded window by window (about :data:`WINDOW` bytes, split at
a NUL), never as one copy of the whole column, and a dict with str keys is
filled straight from its two columns. Int and float set members and dict
keys are checked for hash floods before the container is built (str columns
need no check: a str hash is a 64-bit SipHash, and a flood needs dozens of
strs with one full hash value, out of reach even for a worker that knew the
key); malformed columns raise SandboxSecurityError.
"""

from __future__ import annotations

import itertools
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .exceptions import SandboxSecurityError

#: containers shorter than this keep the item-by-item tags
MIN_ITEMS = 64
#: items per encoded piece (a piece of ints is 1 MiB; one of short strs at least 256 KiB)
PIECE = 1 << 17
#: bytes of text the host decodes at a time
WINDOW = 1 << 20
#: ``L`` + container tag + kind + count + column; ``K`` + key kind + value kind + count + columns
TAGS = (b"L", b"K")
_KIND = {int: b"i", float: b"f", str: b"s"}
_pack_I = struct.Struct(">I").pack
_unpack_I = struct.Struct(">I").unpack_from
_BIG = sys.byteorder == "big"
_SEQS = (b"l", b"t", b"S", b"Z", b"O")

#: estimated host bytes per item, the slot holding it included (as codec's item-by-item charges)
_ITEM_COST = {b"i": 40, b"f": 32, b"s": 57}


# -- worker side ---------------------------------------------------------------------------------
def _kind_of(items: Iterable[Any]) -> bytes | None:
    types = set(map(type, items))
    if len(types) != 1:
        return None
    return _KIND.get(types.pop())


def _chunks(items: Any, n: int) -> Iterator[Any]:
    """``items`` in lists (or array slices) of :data:`PIECE`, without a copy of the whole."""
    if type(items) in (list, tuple) or hasattr(items, "dtype"):
        for i in range(0, n, PIECE):
            yield items[i : i + PIECE]
        return
    it = iter(items)
    while chunk := list(itertools.islice(it, PIECE)):
        yield chunk


def _column(kind: bytes, items: Any, n: int) -> list[Any] | None:
    """``items`` as one column's parts (u32 length, then the data in pieces), or None when they do not fit."""
    pieces: list[Any] = []
    size = 0
    if kind == b"s":
        for i, chunk in enumerate(_chunks(items, n)):
            if hasattr(chunk, "dtype"):
                chunk = chunk.tolist()
            # Pieces after the first start with the NUL that separates them from the one before.
            joined = "\0".join(chunk if i == 0 else itertools.chain(("",), chunk))
            if joined.count("\0") != len(chunk) - (i == 0):
                return None
            raw = joined.encode("utf-8", "surrogatepass")
            pieces.append(raw)
            size += len(raw)
    else:
        for chunk in _chunks(items, n):
            try:
                arr = array("q" if kind == b"i" else "d", chunk)
            except OverflowError:
                return None
            if _BIG:
                arr.byteswap()
            pieces.append(memoryview(arr).cast("B"))
            size += len(arr) * 8
    return [_pack_I(size), *pieces]


def encode_seq(v: Any, seq_tag: bytes, out: list[Any]) -> bool:
    """Worker side: append ``v`` as a column and return True, or return False (use the generic tags).

    ``seq_tag`` ``O`` is a 1-d numpy object array (a pandas column): it fits only as strs.
    """
    n = len(v)
    kind = _kind_of(v)
    if kind is None or (seq_tag == b"O" and (kind != b"s" or n == 0)):
        return False
    col = _column(kind, v, n)
    if col is None:
        return False
    out.append(b"L" + seq_tag + kind + _pack_I(n))
    out += col
    return True


def encode_dict(v: dict[Any, Any], out: list[Any]) -> bool:
    """Worker side: a dict with a column of keys and a column of values, if both fit."""
    n = len(v)
    kk, vk = _kind_of(v), _kind_of(v.values())
    if kk is None or vk is None:
        return False
    kcol = _column(kk, v, n)
    vcol = _column(vk, v.values(), n) if kcol is not None else None
    if kcol is None or vcol is None:
        return False
    out.append(b"K" + kk + vk + _pack_I(n))
    out += kcol
    out += vcol
    return True


# -- host side -----------------------------------------------------------------------------------
class _Pieces:
    """Host side: the items of one column at ``start`` of ``r``'s frame, as lists of at most a window.

    Iterating yields the lists; past the last it checks that exactly ``n`` came.
    """

    def __init__(self, r: Any, kind: bytes, n: int, start: int) -> None:
        self.r, self.kind, self.n = r, kind, n
        if start + 4 > r.end:
            raise SandboxSecurityError("malformed value: truncated length")
        self.size = int(_unpack_I(r.buf, start)[0])
        self.start = start + 4
        self.stop = self.start + self.size
        if self.stop > r.end:
            raise SandboxSecurityError("malformed value: truncated data")
        if kind == b"s":
            if n == 0 or self.size < n - 1:
                raise SandboxSecurityError("malformed value: str column shorter than its count")
        elif kind in (b"i", b"f"):
            if self.size != 8 * n:
                raise SandboxSecurityError("malformed value: number column does not hold its count")
        else:
            raise SandboxSecurityError(f"malformed value: unknown column kind {kind!r}")

    def __iter__(self) -> Iterator[list[Any]]:
        buf, r = self.r.buf, self.r
        if self.kind != b"s":
            code = "q" if self.kind == b"i" else "d"
            for p in range(self.start, self.stop, 8 * PIECE):
                raw = buf[p : min(p + 8 * PIECE, self.stop)]
                if _BIG:
                    arr = array(code)
                    arr.frombytes(raw)
                    arr.byteswap()
                    yield arr.tolist()
                else:
                    yield raw.cast(code).tolist()
            return
        got, pos, stop, window = 0, self.start, self.stop, WINDOW
        while True:
            r.check()
            if stop - pos <= window:
                items = _text(buf[pos:stop]).split("\0")
                got += len(items)
                if got != self.n:
                    raise SandboxSecurityError("malformed value: str column does not hold its count")
                yield items
                return
            chunk = bytes(buf[pos : pos + window])
            cut = chunk.rfind(b"\0")
            if cut < 0:  # one str longer than the window: look further
                window *= 2
                continue
            items = _text(memoryview(chunk)[:cut]).split("\0")
            got += len(items)
            if got >= self.n:
                raise SandboxSecurityError("malformed value: str column does not hold its count")
            yield items
            pos, window = pos + cut + 1, WINDOW


def _text(raw: Any) -> str:
    try:
        return str(raw, "utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise SandboxSecurityError("malformed value: invalid UTF-8") from exc


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
        if seq not in _SEQS or kind not in _ITEM_COST or (seq == b"O" and kind != b"s"):
            raise SandboxSecurityError("malformed value: bad column header")
        if n > r.end - r.pos:
            raise SandboxSecurityError("malformed value: count larger than the data")
        col = _Pieces(r, kind, n, r.pos)
        head = 56 + 8 * n if seq in (b"l", b"t", b"O") else 216 + 32 * n
        _charge(r, n, head + _ITEM_COST[kind] * n, col.size if kind == b"s" else 0)
        r.pos = col.stop
        if seq == b"O":
            return _object_array(col, n)
        items: list[Any] = []
        for piece in col:
            items += piece
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
    kcol = _Pieces(r, kk, n, r.pos)
    vcol = _Pieces(r, vk, n, kcol.stop)
    text = (kcol.size if kk == b"s" else 0) + (vcol.size if vk == b"s" else 0)
    _charge(r, 2 * n, 64 + 48 * n + (_ITEM_COST[kk] + _ITEM_COST[vk]) * n, text)
    r.pos = vcol.stop
    values = itertools.chain.from_iterable(vcol)
    try:
        if kk == b"s":
            out: dict[Any, Any] = {}
            out.update(zip(itertools.chain.from_iterable(kcol), values, strict=True))
            return out
        keys: list[Any] = []
        for piece in kcol:
            keys += piece
        check_hashes(keys, "dict key")
        return dict(zip(keys, values, strict=True))
    except ValueError as exc:  # zip's: one column ran out before the other
        raise SandboxSecurityError("malformed value: dict columns of different lengths") from exc


def _object_array(col: _Pieces, n: int) -> Any:
    """Host side: an ``O`` column as a 1-d numpy object array of strs, filled window by window."""
    try:
        import numpy as np
    except ImportError:
        raise SandboxSecurityError("the sandbox returned a str column but numpy is not installed here") from None
    arr = np.empty(n, dtype=object)
    at = 0
    for piece in col:
        arr[at : at + len(piece)] = piece
        at += len(piece)
    return arr
