"""Hash-flood checks for :mod:`glsandbox_kernel.codec` (host side).

Sets, dict keys and pandas labels from the worker are checked here before
anything hashes them: a worker that knows CPython's hash of numbers (no
secret) can make any number of distinct values with one hash value, and a
hash table built from them is quadratic.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from .exceptions import SandboxSecurityError
from .loaded import loaded_module

#: types whose hash is a SipHash under this interpreter's random seed: no worker can flood them
_SEEDED = frozenset({str, bytes})


def check(members: list[Any], what: str, limit: int, *, unhashable_ok: bool = False, pandas: bool = False) -> None:
    """Refuse a hash flood before a set, dict or pandas index is built from ``members`` (host side).

    Distinct members with one hash value make each insertion walk the same
    probe chain, so building the container is quadratic in their number;
    equal members (a label repeated down an index) cost nothing extra and
    are not counted. Linear: the hashes are counted first (the Counter's own
    keys are the hashes, distinct ints whose hashes are themselves); only a
    hash with more than ``limit`` members is looked at further,
    each member compared with at most that many distinct ones kept so far.
    Members that are all ``str``/``bytes`` (seeded SipHash: dozens of one
    full 64-bit hash are out of reach) are not counted.
    ``unhashable_ok``: members that cannot be hashed are skipped (an object
    index may hold lists; nothing hashes them), not refused.
    ``pandas``: the members are objects pandas will hash (an object column or
    index): counted by pandas' own object hash, see :func:`_check_objects`.
    """
    np = loaded_module("numpy")
    if np is not None and type(members) is np.ndarray:
        _check_numbers(np, members, what, limit)
        return
    if pandas:
        _check_objects(members, what, limit, unhashable_ok)
        return
    if len(members) <= limit:
        for m in members:
            if not unhashable_ok or _hashable(m):
                _hash(m, what)
        return
    if set(map(type, members)) <= _SEEDED:
        return
    try:
        distinct = set(map(hash, members))
    except TypeError as exc:
        if not unhashable_ok:
            raise SandboxSecurityError(f"malformed value: unhashable {what}") from exc
        members = [m for m in members if _hashable(m)]
        distinct = set(map(hash, members))
    # n members over d distinct hashes: no hash has more than n - d + 1 of them.
    if len(members) - len(distinct) + 1 <= limit:
        return
    _refuse_crowds(list(map(hash, members)), members, what, limit, "", lambda m: m)


def _refuse_crowds(keys: list[int], members: list[Any], what: str, limit: int, table: str, same_key: Any) -> None:
    """Refuse more than ``limit`` distinct members (as ``same_key`` makes them) of one of ``keys``.

    Only members of a key with more than ``limit`` are compared, each with at most ``limit`` kept.
    """
    hot = {h for h, c in Counter(keys).items() if c > limit}
    if not hot:
        return
    kept: dict[int, list[Any]] = {h: [] for h in hot}
    try:
        for h, m in zip(keys, members, strict=True):
            same = kept.get(h)
            if same is not None and (k := same_key(m)) not in same:  # ``in``: identity, then ==, in C
                same.append(k)
                if len(same) > limit:
                    raise SandboxSecurityError(
                        f"refused a value from the worker: more than {limit} distinct {what}s share one "
                        f"hash value{table} (a hash-collision flood; at most {limit} may)"
                    )
    except SandboxSecurityError:
        raise
    except Exception as exc:  # a comparison that fails: no decoded type's does
        raise SandboxSecurityError(f"malformed value: {what}s that cannot be compared") from exc


_M64 = (1 << 64) - 1
#: xxHash primes of CPython's (and pandas' copy of its) tuple hash
_XP1, _XP2, _XP5 = 11400714785074694791, 14029467366897019727, 2870177450012600261
_TUPLE_TAIL = _XP5 ^ 3527539
#: stands for every float NaN: pandas' object table holds them as one key
_NAN = object()
#: types pandas' object table hashes with Python's own hash (then folds), members or not of a tuple
_PLAIN = frozenset({int, bool, str, bytes, type(None)})


def pandas_object_hash(member: Any) -> int:
    """pandas' ``kh_python_hash_func`` (3.1 measured): the 32-bit hash its object tables slot ``member`` by.

    Python's hash folded to 32 bits (``(h >> 32) ^ h``), NaN parts of floats and
    complexes hash 0, and a tuple hashes its items' *folded* hashes with
    CPython's xxHash combiner. So distinct Python hashes collide here too:
    ``(a << 32) | (a ^ c)`` for any ``a`` folds to ``c``, and 1-tuples of such ints
    collide though Python's tuple hashes differ. Unhashable members are 0 (as pandas).
    """
    t = type(member)
    if t is float:
        h = 0 if member != member else hash(member)
    elif t is complex:
        re, im = member.real, member.imag
        h = (0 if re != re else hash(re)) + 1000003 * (0 if im != im else hash(im))
        h = -2 if h & _M64 == _M64 else h
    elif t is tuple:
        acc = _XP5
        for item in member:
            acc = (acc + pandas_object_hash(item) * _XP2) & _M64
            acc = (((acc << 31) | (acc >> 33)) * _XP1) & _M64
        acc = (acc + (len(member) ^ _TUPLE_TAIL)) & _M64
        h = 1546275796 if acc == _M64 else acc
    else:
        try:
            h = hash(member)
        except TypeError:
            return 0
    h &= _M64
    return ((h >> 32) ^ h) & 0xFFFFFFFF


def _same_key(member: Any) -> Any:
    """``member`` as pandas' object table compares it: every NaN one key, inside tuples too."""
    t = type(member)
    if t is float and member != member:
        return _NAN
    if t is complex and member != member:
        return (complex, _same_key(member.real), _same_key(member.imag))
    if t is tuple:
        return tuple(map(_same_key, member))
    return member


def _check_objects(members: list[Any], what: str, limit: int, unhashable_ok: bool) -> None:
    """Refuse more than ``limit`` distinct objects of one pandas object hash (:func:`pandas_object_hash`).

    An object column or index (Python ints past 64 bits, ints beside a str,
    tuples, mixed objects) is hashed by pandas' object table on its first
    ``value_counts``/``drop_duplicates``/``is_unique``/``.loc``/``set_index``:
    20 000 colliding ones cost 3-12 s of host CPU (quadratic), whether their
    Python hashes are one value (``i * (2**61 - 1)``) or distinct (the 32-bit
    fold). Linear: one hash per member, counted; only members of a hash
    with more than ``limit`` are compared, each with at most ``limit`` kept.
    Unhashable members (lists) are skipped: pandas raises on some uses and
    hashes them all to 0 on others, a cost any list column has (not refused);
    a tuple holding one is counted (pandas hashes its other items).
    """
    types = set(map(type, members))
    if len(members) <= limit or types <= _SEEDED:
        if not unhashable_ok:
            for m in members:
                _hash(m, what)
        return
    if not unhashable_ok:
        for m in members:
            _hash(m, what)
    elif not types <= _PLAIN | {float, complex, tuple}:  # a tuple holding a list is hashed all the same
        members = [m for m in members if type(m) is tuple or _hashable(m)]
    np = loaded_module("numpy")
    if np is not None and types <= _PLAIN:  # pandas' hash is Python's, folded: at numpy speed
        h = np.fromiter(map(hash, members), dtype=np.int64, count=len(members)).view(np.uint64)
        folded = ((h >> np.uint64(32)) ^ h) & np.uint64(0xFFFFFFFF)
        if int(np.unique(folded, return_counts=True)[1].max()) <= limit:
            return
        keys = folded.tolist()
    else:
        keys = list(map(pandas_object_hash, members))
    _refuse_crowds(keys, members, what, limit, " in pandas' object table", _same_key)


def _hashable(member: Any) -> bool:
    try:
        hash(member)
    except TypeError:
        return False
    return True


def _hash(member: Any, what: str) -> int:
    try:
        return hash(member)
    except TypeError as exc:
        raise SandboxSecurityError(f"malformed value: unhashable {what}") from exc


#: elements hashed at a time by :func:`_check_numbers` (bounded temporaries, numpy speed)
_CHUNK = 1 << 16
_M = 0x5BD1E995
#: murmur2's state after its seed (0xC70F6907 ^ 4) is multiplied once, as pandas starts every hash
_H0 = ((0xC70F6907 ^ 4) * _M) & 0xFFFFFFFF
_NAN64, _NAN32 = 0x7FF8000000000000, 0x7FC00000


def _murmur_mix(np: Any, k: Any) -> Any:
    k = k * np.uint32(_M)
    k ^= k >> np.uint32(24)
    return k * np.uint32(_M)


def _murmur_final(np: Any, h: Any) -> Any:
    h ^= h >> np.uint32(13)
    h *= np.uint32(_M)
    h ^= h >> np.uint32(15)
    return h


def _float_keys(np: Any, x: Any, ubits: Any, nan: int) -> tuple[Any, Any]:
    """Floats as pandas' float table keys them: 0.0/-0.0 one key, every NaN one key (both hash to 0)."""
    zero, nans = x == 0, x != x
    keys = x.view(ubits).copy()
    keys[zero] = 0
    keys[nans] = nan
    return keys, zero | nans


def _hash_int64(np: Any, x: Any) -> tuple[Any, Any]:
    k = x.view(np.uint64)
    return k, ((k >> np.uint64(33)) ^ k ^ (k << np.uint64(11))).astype(np.uint32)


def _hash_float64(np: Any, x: Any, final: bool = True) -> tuple[Any, Any]:
    """pandas' ``kh_float64_hash_func``: ``murmur2_64to32`` of the bits (fixed seed), 0.0 and NaN to 0.

    ``final=False``: without murmur's last mix, a bijection that maps 0 to 0 (the same collisions).
    """
    keys, folded = _float_keys(np, x, np.uint64, _NAN64)
    h = np.uint32(_H0) ^ _murmur_mix(np, keys.astype(np.uint32))
    h *= np.uint32(_M)
    h ^= _murmur_mix(np, (keys >> np.uint64(32)).astype(np.uint32))
    if final:
        h = _murmur_final(np, h)
    h[folded] = 0
    return keys, h


def _hash_float32(np: Any, x: Any) -> tuple[Any, Any]:
    """pandas' ``kh_float32_hash_func``: ``murmur2_32to32`` of the bits, 0.0 and NaN to 0."""
    keys, folded = _float_keys(np, x, np.uint32, _NAN32)
    h = _murmur_final(np, np.uint32(_H0) ^ _murmur_mix(np, keys))
    h[folded] = 0
    return keys, h


def _hash_complex(np: Any, x: Any) -> tuple[Any, Any]:
    """pandas' complex hash: the XOR of its parts' float hashes (easy to collide: any real part has its imag)."""
    part = _hash_float64 if x.dtype.itemsize == 16 else _hash_float32
    real, hr = part(np, np.ascontiguousarray(x.real))
    imag, hi = part(np, np.ascontiguousarray(x.imag))
    if x.dtype.itemsize == 8:  # one 64-bit key per value
        return (real.astype(np.uint64) << np.uint64(32)) | imag, hr ^ hi
    return np.stack([real, imag], axis=1), hr ^ hi


def _differs(np: Any, a: Any, b: Any) -> Any:
    """Element-wise: key ``a`` is not key ``b`` (a complex128 key is a row of two words)."""
    return (a != b).any(axis=1) if a.ndim == 2 else a != b


def _hasher(dtype: Any) -> Any:
    kind, size = dtype.kind, dtype.itemsize
    if kind in "iumM" and size == 8:
        return _hash_int64, "int64"
    if kind == "f" and size == 8:
        return functools.partial(_hash_float64, final=False), "float64"
    if kind == "c" and size in (8, 16):
        return _hash_complex, f"complex{size * 8}"
    return None, ""  # narrower ints and float32 hash one-to-one (at most the 0/NaN fold shares)


def _check_numbers(np: Any, values: Any, what: str, limit: int) -> None:
    """Refuse an array of numbers with more than ``limit`` distinct values of one pandas hash value.

    pandas (3.1 measured) hashes 64-bit ints (int64, uint64, datetime64,
    timedelta64) with klib's ``(k >> 33) ^ k ^ (k << 11)`` cut to 32 bits:
    linear over GF(2), so a worker solves for 2**31 distinct values of one
    hash. float64 is ``murmur2_64to32`` of the bits with a fixed seed: each
    step is invertible, so for any low word the high word of one hash is
    solved; complex is the XOR of its parts' hashes. 20 000 of them make
    ``is_unique``/``value_counts`` take 0.5 s against 0.001 s (quadratic),
    whether index labels or a column's data. Linear, in chunks (bounded
    temporaries): the hashes are counted in buckets of their low bits (as pandas slots them)
    (about 8 values a bucket; a run of one value counts once, a bound on the
    distinct values). Only in a bucket of more than ``limit``: one element
    stands in for its equals (a value repeated down a column, a category
    code), four rounds; what is left of such buckets is sorted and its
    distinct values counted by hash exactly. Repeated values are never refused.
    The array's memory is read, never kept: a flat view of it is hashed.
    """
    hasher, name = _hasher(values.dtype)
    flat = values.reshape(-1)
    n = len(flat)
    if hasher is None or n <= limit:
        return
    bits = max(10, min(20, (n // 8).bit_length()))
    size, mask, chunk = 1 << bits, np.uint32((1 << bits) - 1), 1 << bits
    counts = np.zeros(size, dtype=np.intp)
    buf = np.empty(min(n, chunk), dtype=np.uint32)  # one bincount per ``chunk`` values (it costs ``size``)
    last = None
    for start in range(0, n, chunk):
        filled = 0
        for sub in range(start, min(start + chunk, n), _CHUNK):
            keys, h = hasher(np, flat[sub : min(sub + _CHUNK, start + chunk)])
            first = np.ones(len(h), dtype=bool)  # a run of one value counts once: a bound on distinct values
            first[1:] = _differs(np, keys[1:], keys[:-1])
            if last is not None:
                first[0] = _differs(np, keys[:1], last)[0]
            last = keys[-1:].copy()
            picked = h[first] & mask
            buf[filled : filled + len(picked)] = picked
            filled += len(picked)
        counts += np.bincount(buf[:filled], minlength=size)
    hot = counts > limit
    if not hot.any():
        return
    # One element of each hot bucket stands for its equals (a value repeated down a column is one value).
    pos = np.zeros(size, dtype=np.intp)
    for start in range(0, n, _CHUNK):
        b = hasher(np, flat[start : start + _CHUNK])[1] & mask
        at = np.flatnonzero(hot[b])
        pos[b[at]] = at + start
    ids = np.flatnonzero(hot)
    k, h_r = hasher(np, flat[pos[ids]])
    kept: list[tuple[Any, Any]] = [(k, h_r)]
    keys_r = np.zeros((size, *k.shape[1:]), dtype=k.dtype)  # each hot bucket's stand-in, by bucket
    keys_r[ids] = k
    parts = []
    for start in range(0, n, _CHUNK):
        keys, h = hasher(np, flat[start : start + _CHUNK])
        b = h & mask
        m = hot[b] & _differs(np, keys, keys_r[b])
        parts.append((keys[m], h[m]))
    keys, h = (np.concatenate(x) for x in zip(*parts, strict=True))
    for rounds in range(1, 4):  # each round sets one more value of a bucket aside, as its stand-in
        b = h & mask
        hot = np.bincount(b, minlength=size) + rounds > limit
        m = hot[b]
        keys, h, b = keys[m], h[m], b[m]
        if not len(h):
            return
        pos[b] = np.arange(len(b))
        ids = pos[np.flatnonzero(hot)]  # every hot bucket holds one at least (limit > rounds)
        kept.append((keys[ids], h[ids]))
        m = _differs(np, keys, keys[pos[b]])
        keys, h = keys[m], h[m]
    keys = np.concatenate([k for k, _ in kept] + [keys])
    h = np.concatenate([x for _, x in kept] + [h])
    order = np.lexsort(keys.T) if keys.ndim == 2 else np.argsort(keys)
    keys, h = keys[order], h[order]
    new = np.ones(len(keys), dtype=bool)
    new[1:] = _differs(np, keys[1:], keys[:-1])
    h = np.sort(h[new])  # one hash per distinct value (a value decides its hash)
    edges = np.flatnonzero(h[1:] != h[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [len(h)])))
    top = int(runs.max())
    if top > limit:
        raise SandboxSecurityError(
            f"refused a value from the worker: {top} distinct {what}s share one pandas {name} hash value "
            f"(a hash-collision flood; at most {limit} may)"
        )
