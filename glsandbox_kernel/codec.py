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

Decoding runs under a :class:`Budget` (host side): at most ``max_objects``
objects, ``MAX_DEPTH`` levels, an estimated host memory of ``ratio`` times
the frame (plus a floor), and a wall-clock deadline (the call's timeout).
Sets, dict keys, pandas labels (object index values, each level of a
tuple index, column names) and object columns are checked for hash floods before they are
built: more than :data:`MAX_SAME_HASH` distinct members with one hash value
(which would make building them, or pandas' hash table, quadratic) are
refused. Whatever exceeds the budget is
refused with SandboxSecurityError, and the session kills the worker.
"""

from __future__ import annotations

import mmap
import pickle
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from . import codec_arrays as arrays
from . import codec_columns as columns
from . import codec_fast as fast
from . import codec_hashes as hashes
from .exceptions import SandboxSecurityError, UnsupportedType

MAX_DEPTH = 200
#: most members of one set (or keys of one dict) that may share a hash value
MAX_SAME_HASH = 32
# A Fraction's numerator and denominator: normalising bigger ones costs the host seconds of math.gcd.
FRACTION_BITS = 1 << 13


class Budget(NamedTuple):
    """What decoding one frame may cost the host (host side; the session passes the deadline).

    ``ratio``/``floor``: the estimated host memory of the decoded value may be
    at most ``ratio * len(frame) + floor`` bytes. ``deadline``: a
    ``time.monotonic()`` instant decoding must finish by (None: only the
    frame-size-based allowance ``seconds_floor + len / bytes_per_second``).
    ``hash_checks``: refuse hash floods (:func:`_check_hashes`); off only where
    the frame comes from the trusted host (the worker reading its requests,
    whose CPU the sandbox's limit pays for). A named tuple, not a dataclass: the worker imports this module, and a
    dataclass would cost every fresh container dataclasses and inspect.
    """

    max_objects: int = 8_000_000
    ratio: int = 12
    floor: int = 8 * 1024 * 1024
    deadline: float | None = None
    seconds_floor: float = 10.0
    bytes_per_second: float = 256 * 1024
    hash_checks: bool = True


DEFAULT_BUDGET = Budget()

# Estimated host bytes per decoded object (CPython 3.11, 64-bit), the slot holding it included.
_COST_SLOT = 8
_COST = {
    b"N": 0,
    b"T": 0,
    b"F": 0,
    b"i": 32,
    b"f": 24,
    b"c": 32,
    b"D": 64,
    b"a": 48,
    b"m": 56,
    b"e": 48,
    b"q": 120,
    b"r": 56,
}

_pack_q = struct.Struct(">q").pack
_unpack_q = struct.Struct(">q").unpack_from
_pack_d = struct.Struct(">d").pack
_unpack_d = struct.Struct(">d").unpack_from
_pack_I = struct.Struct(">I").pack
_unpack_I = struct.Struct(">I").unpack_from


_SEQ_TAGS: dict[type, bytes] = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}


def _qualname(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


#: buffers at least this large travel as their own part (no copy into the frame) and decode
#: as views of a frame the channel allocated for them (see :func:`encode_parts`)
LARGE_BUFFER = 64 * 1024

Part = bytes | memoryview


def encode(value: Any) -> bytes:
    """Encode ``value`` (allowlisted types only) to bytes; raise UnsupportedType otherwise."""
    return b"".join(encode_parts(value))


def encode_parts(value: Any) -> list[Part]:
    """``value`` encoded as parts whose concatenation is :func:`encode`'s bytes.

    Large buffers (numpy data, big bytes, pickle-5 buffers as memoryviews)
    are parts of their own, not copied: :meth:`FrameChannel.send` writes them
    straight to the socket. Raises UnsupportedType outside the allowlist.
    """
    out: list[Part] = []
    _enc(value, out, 0)
    return out


#: a container encoded item by item joins its small parts every this many, into chunks of _CHUNK
_COMPACT_PARTS = 4096
_CHUNK = 512 * 1024


def _compact(out: list[Part], mark: int) -> int:
    """Worker side: join ``out[mark:]`` into one part; return where the next join starts.

    A million small items would otherwise be a million small bytes objects
    (several times the encoded size) beside the value. Parts that are
    views of memory the value owns (numpy data, columns) are never copied,
    nor is more than a few chunks' worth at once.
    """
    tail = out[mark:]
    if memoryview in map(type, tail) or sum(map(len, tail)) > 4 * _CHUNK:
        return len(out)
    joined = b"".join(tail)
    out[mark:] = [joined]
    return mark + 1 if len(joined) >= _CHUNK else mark


def _enc_raw(tag: bytes, raw: Part, out: list[Part]) -> None:
    n = raw.nbytes if isinstance(raw, memoryview) else len(raw)
    if n >= LARGE_BUFFER:
        out.append(tag + _pack_I(n))
        out.append(raw)
    else:
        out.append(tag + _pack_I(n) + bytes(raw))


def _enc(v: Any, out: list[Part], depth: int) -> None:
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
    elif t is bytes:
        _enc_raw(b"b", v, out)
    elif t is bytearray:
        _enc_raw(b"B", memoryview(v), out)
    elif t is memoryview or t is pickle.PickleBuffer:
        view = memoryview(v)
        if not view.contiguous:
            raise UnsupportedType("non-contiguous memoryview")
        _enc_raw(b"v", view.cast("B") if view.format != "B" or view.ndim != 1 else view, out)
    elif t is list or t is tuple or t is set or t is frozenset:
        if len(v) >= columns.MIN_ITEMS and columns.encode_seq(v, _SEQ_TAGS[t], out):
            return
        tag = _SEQ_TAGS[t]
        out.append(tag + _pack_I(len(v)))
        mark = len(out)
        for item in v:
            _enc(item, out, depth + 1)
            if len(out) - mark > _COMPACT_PARTS:
                mark = _compact(out, mark)
        if len(out) - mark > 64:
            _compact(out, mark)
    elif t is dict:
        if len(v) >= columns.MIN_ITEMS and columns.encode_dict(v, out):
            return
        out.append(b"d" + _pack_I(len(v)))
        mark = len(out)
        for key, item in v.items():
            _enc(key, out, depth + 1)
            _enc(item, out, depth + 1)
            if len(out) - mark > _COMPACT_PARTS:
                mark = _compact(out, mark)
        if len(out) - mark > 64:
            _compact(out, mark)
    elif t is complex:
        out.append(b"c" + _pack_d(v.real) + _pack_d(v.imag))
    elif t.__module__ in _LAZY_MODULES:
        _enc_lazy(v, t, out, depth)
    else:
        _enc_optional(v, out, depth)


#: Modules whose types have tags of their own, imported only when a value needs them: a value
#: of their types exists only once its module is imported (a sandbox's first reply imports none).
_LAZY_MODULES = frozenset({"datetime", "decimal", "fractions"})


def _enc_lazy(v: Any, t: type, out: list[Part], depth: int) -> None:
    import datetime as _dt
    import decimal
    import fractions

    if t is _dt.datetime:
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


def _enc_str(tag: bytes, text: str, out: list[Part]) -> None:
    raw = text.encode("utf-8")
    out.append(tag + _pack_I(len(raw)) + raw)


def _enc_optional(v: Any, out: list[Part], depth: int) -> None:
    if not arrays.encode(v, out, depth, _enc, _enc_raw, LARGE_BUFFER):
        raise UnsupportedType(_qualname(v))


class _Reader:
    __slots__ = ("buf", "cost", "deadline", "end", "hash_check", "max_cost", "max_objects", "objects", "pos", "views")

    def __init__(self, buf: bytes | bytearray | memoryview | mmap.mmap, budget: Budget) -> None:
        #: large buffers may decode as views of ``buf``: only of a frame that is nobody else's
        #: (a bytearray or private anonymous mmap the channel allocated for this frame alone),
        #: never of shared memory
        self.views = type(buf) is bytearray or type(buf) is mmap.mmap
        self.buf = memoryview(buf)
        self.pos = 0
        self.end = len(buf)
        self.objects = 0
        self.cost = 0
        self.max_objects = budget.max_objects
        self.max_cost = budget.ratio * self.end + budget.floor
        own = time.monotonic() + budget.seconds_floor + self.end / budget.bytes_per_second
        self.deadline = own if budget.deadline is None else min(own, budget.deadline)
        self.hash_check: Callable[..., None] = _check_hashes if budget.hash_checks else _no_check

    def charge(self, cost: int) -> None:
        """Count one object of ``cost`` estimated host bytes; refuse past the budget."""
        self.objects += 1
        self.cost += cost
        if self.cost > self.max_cost or not self.objects & 0xFFF:
            self.check()

    def check(self) -> None:
        """Refuse when the memory, object or time budget is spent (every 4096 objects and at the end)."""
        if self.cost > self.max_cost:
            raise SandboxSecurityError(
                f"refused a value from the worker: decoding {self.end} bytes would take more than "
                f"{self.max_cost} bytes of host memory"
            )
        if self.objects > self.max_objects:
            raise SandboxSecurityError(f"refused a value from the worker: more than {self.max_objects} objects")
        if time.monotonic() > self.deadline:
            raise SandboxSecurityError("refused a value from the worker: decoding it ran past its time budget")

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

    def text(self, n: int | None = None) -> str:
        if n is None:
            n = self.u32()
        try:
            return bytes(self.take(n)).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise SandboxSecurityError("malformed value: invalid UTF-8") from exc


def decode(data: bytes | bytearray | memoryview | mmap.mmap, budget: Budget = DEFAULT_BUDGET) -> Any:
    """Decode bytes made by :func:`encode`. Host side: treats ``data`` as hostile, decodes under ``budget``.

    ``data`` as a bytearray (or private anonymous mmap) hands its ownership to the value: large numpy
    arrays and ``v`` buffers become views of it instead of copies. A MessagePack
    frame (its first byte a map header) takes :mod:`glsandbox_kernel.codec_fast`.
    """
    if data and data[0] in fast.FIRST_BYTES:
        return fast.decode(data)
    r = _Reader(data, budget)
    try:
        value = _dec(r, 0)
    except SandboxSecurityError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        # a hostile value that a constructor refused (e.g. len() of a 2**64-row RangeIndex): refused, recorded
        raise SandboxSecurityError(f"malformed value: {type(exc).__name__}: {exc}") from exc
    r.check()
    if r.pos != r.end:
        raise SandboxSecurityError("malformed value: trailing bytes after the value")
    return value


def _dec(r: _Reader, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise SandboxSecurityError("malformed value: nesting too deep")
    tag = bytes(r.take(1))
    r.objects += 1
    r.cost += _COST.get(tag, 0) + _COST_SLOT
    if r.cost > r.max_cost or not r.objects & 0xFFF:
        r.check()
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
        r.charge(32 + n)
        return int.from_bytes(r.take(n), "big", signed=True)
    if tag == b"f":
        return _unpack_d(r.take(8))[0]
    if tag == b"s":
        n = r.u32()
        r.charge(49 + n)
        return r.text(n)
    if tag == b"b" or tag == b"B":
        n = r.u32()
        r.charge(57 + n)
        raw = r.take(n)
        return bytes(raw) if tag == b"b" else bytearray(raw)
    if tag == b"v":
        n = r.u32()
        r.charge(200 + (0 if r.views else n))
        raw = r.take(n)
        return raw if r.views else bytearray(raw)  # writable, as an in-band pickled array is
    if tag == b"L" or tag == b"K":
        return columns.decode(r, tag, r.hash_check)
    if tag in (b"l", b"t", b"S", b"Z"):
        n = r.u32()
        if n > r.end - r.pos:
            raise SandboxSecurityError("malformed value: count larger than the data")
        # A set's table is at least 4 slots of 16 bytes per member, above its 200-byte head.
        r.charge(56 + 8 * n if tag in (b"l", b"t") else 216 + 32 * n)
        items = [_dec(r, depth + 1) for _ in range(n)]
        if tag == b"l":
            return items
        if tag == b"t":
            return tuple(items)
        r.hash_check(items, "set member")
        return set(items) if tag == b"S" else frozenset(items)
    if tag == b"d":
        n = r.u32()
        if n > r.end - r.pos:
            raise SandboxSecurityError("malformed value: count larger than the data")
        r.charge(64 + 48 * n)
        keys: list[Any] = []
        values: list[Any] = []
        for _ in range(n):
            keys.append(_dec(r, depth + 1))
            values.append(_dec(r, depth + 1))
        r.hash_check(keys, "dict key")
        return dict(zip(keys, values, strict=True))
    if tag == b"c":
        return complex(_unpack_d(r.take(8))[0], _unpack_d(r.take(8))[0])
    if tag in _LAZY_TAGS:
        return _dec_lazy(tag, r, depth)
    if tag in (b"n", b"g"):
        return arrays.decode_numpy(r, tag, depth, _dec, LARGE_BUFFER, r.hash_check)
    if tag in (b"P", b"R", b"X"):
        return arrays.decode_pandas(r, tag, depth, _dec, r.hash_check)
    raise SandboxSecurityError(f"malformed value: unknown tag {tag!r}")


#: Tags of :data:`_LAZY_MODULES`' types (their modules are imported on the first such value).
_LAZY_TAGS = frozenset({b"D", b"a", b"m", b"e", b"q", b"r"})


def _dec_lazy(tag: bytes, r: Any, depth: int) -> Any:
    import datetime as _dt
    import decimal
    import fractions

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
            if max(num.bit_length(), den.bit_length()) > FRACTION_BITS:
                # Normalising runs math.gcd, quadratic in the size and not interruptible.
                raise SandboxSecurityError(f"Fraction from the sandbox has more than {FRACTION_BITS} bits")
            return fractions.Fraction(num, den)
    except (ValueError, OverflowError, ArithmeticError, ZeroDivisionError) as exc:
        raise SandboxSecurityError(f"malformed value for tag {tag!r}: {exc}") from exc
    raise SandboxSecurityError(f"malformed value: unknown tag {tag!r}")


def _check_hashes(members: list[Any], what: str, *, unhashable_ok: bool = False, pandas: bool = False) -> None:
    """Refuse a hash flood before a set, dict or pandas index is built (see :func:`.codec_hashes.check`)."""
    hashes.check(members, what, MAX_SAME_HASH, unhashable_ok=unhashable_ok, pandas=pandas)


def _no_check(members: list[Any], what: str, *, unhashable_ok: bool = False, pandas: bool = False) -> None:
    """:func:`_check_hashes` for a frame of the trusted host (``Budget.hash_checks`` off)."""
