"""Hash-flood checks for :mod:`glsandbox_kernel.codec` (host side).

Sets, dict keys and pandas labels from the worker are checked here before
anything hashes them: a worker that knows CPython's hash of numbers (no
secret) can make any number of distinct values with one hash value, and a
hash table built from them is quadratic.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from .exceptions import SandboxSecurityError

#: types whose hash is a SipHash under this interpreter's random seed: no worker can flood them
_SEEDED = frozenset({str, bytes})


def check(members: list[Any], what: str, limit: int, *, unhashable_ok: bool = False) -> None:
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
    """
    np = sys.modules.get("numpy")
    if np is not None and type(members) is np.ndarray:
        _check_int64(np, members, what, limit)
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
    hot = {h for h, c in Counter(map(hash, members)).items() if c > limit}
    if not hot:
        return
    kept: dict[int, list[Any]] = {h: [] for h in hot}
    try:
        for m in members:
            same = kept.get(hash(m))
            if same is not None and m not in same:  # ``in``: identity, then ==, in C
                same.append(m)
                if len(same) > limit:
                    raise SandboxSecurityError(
                        f"refused a value from the worker: more than {limit} distinct {what}s share one "
                        f"hash value (a hash-collision flood; at most {limit} may)"
                    )
    except SandboxSecurityError:
        raise
    except Exception as exc:  # a comparison that fails: no decoded type's does
        raise SandboxSecurityError(f"malformed value: {what}s that cannot be compared") from exc


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


def _check_int64(np: Any, values: Any, what: str, limit: int) -> None:
    """Refuse 64-bit int labels (int64, uint64, datetime64, timedelta64) that flood pandas' int64 hash table.

    pandas (3.1 measured) hashes them with klib's ``(k >> 33) ^ k ^ (k << 11)``
    cut to 32 bits: linear over GF(2), so a worker solves for 2**31 distinct
    values of one hash; 20 000 of them make ``is_unique``/``.loc`` take 0.46 s
    against 0.001 s (quadratic). Counted over the distinct values (numpy,
    C speed); other dtypes are not checked (narrower ints hash to
    themselves, floats by their own function).
    """
    if values.ndim != 1 or values.dtype.kind not in "iumM" or values.dtype.itemsize != 8 or len(values) <= limit:
        return
    keys = np.unique(values.view(np.uint64))
    hashed = (keys >> np.uint64(33)) ^ keys ^ (keys << np.uint64(11))
    _, counts = np.unique(hashed & np.uint64(0xFFFFFFFF), return_counts=True)
    top = int(counts.max())
    if top > limit:
        raise SandboxSecurityError(
            f"refused a value from the worker: {top} distinct {what}s share one pandas int64 hash value "
            f"(a hash-collision flood; at most {limit} may)"
        )
