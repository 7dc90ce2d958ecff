"""Outside review (15th): 64-bit values pandas hashes that the codec's flood check never looks at.

The host's ``codec_hashes._check_int64`` refuses int64/uint64/datetime64
index labels of one pandas hash value (klib's ``(k >> 33) ^ k ^ (k << 11)``
cut to 32 bits). Two doors stay open, both reachable from STRICT through a
return value (or ``%%sandbox --out``), no host secret needed:

1. **float64 index labels.** ``_check_int64`` returns at once for dtype
   kind ``f`` ("floats by their own function"), but pandas' float64 hash is
   ``murmur2_64to32`` of the bits with a fixed seed: for any low word the
   sandbox solves for the high word (each mixing step is invertible), so it
   makes 2**32 distinct finite floats of one hash. Measured on the host
   (pandas 3.1.1, load 9): 20 000 of them (160 KB) make ``index.is_unique``
   take 0.32 s against 0.0007 s for random floats; quadratic, so 200 000
   (1.6 MB) is about half a minute, 1 M minutes, with the GIL held.
2. **64-bit DATA columns** (a Series' values, a DataFrame column, a plain
   ``ndarray``) are not checked at all, whatever the dtype. Every pandas
   call that hashes values -- ``value_counts``, ``nunique``, ``unique``,
   ``drop_duplicates``, ``duplicated``, ``groupby``, ``isin``, ``merge``,
   ``pd.unique(arr)`` -- builds the same klib table. Measured: 20 000
   colliding int64 values ``value_counts`` 0.56 s, ``nunique`` 0.43 s,
   against 0.0016 s for random ones; 20 000 colliding floats
   ``value_counts`` 0.82 s against 0.001 s. Through a real STRICT
   namespace sandbox (``OSSandbox.execute``, load 9-10): 100 000 values
   (800 KB) returned, then on the host ``value_counts`` of the int Series
   24.3 s of CPU and ``is_unique`` of the float index 10.1 s, against
   0.01 s for random ints.

What the host saw: the values decode without a word; the first ordinary
pandas call on them freezes the kernel (heartbeat, relay, interrupts wait
for the GIL) for a time quadratic in the column's length. Severity:
medium-low (host CPU DoS of a frozen kernel; needs the user to hash the
returned data, which is what one does with a returned frame).

Expected (what these tests assert, no timing): a value holding more than
``MAX_SAME_HASH`` distinct 64-bit numbers of one pandas hash value, as
index labels or as a column's data, is refused with SandboxSecurityError,
as int64 index labels already are.

Fix direction: ``codec_hashes._check_int64`` also covers float64 (pandas'
``kh_float64_hash_func``: ``murmur2_64to32`` of the bits, 0.0/-0.0 and NaN
folded), and ``codec_arrays.decode_pandas`` / ``decode_numpy`` run it over
every 1-d 64-bit column they return, not only the index (linear, numpy
speed). Files: ``codec_hashes.py``, ``codec_arrays.py``.
"""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.exceptions import SandboxSecurityError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")
OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(300)]

N = 5000  # far past MAX_SAME_HASH (32); the quadratic build of 5 000 is still quick


def colliding_floats(n: int) -> object:
    """SANDBOX side: ``n`` distinct finite float64 values of one pandas hash (``murmur2_64to32``, fixed seed)."""
    import numpy as np

    m, seed = np.uint32(0x5BD1E995), np.uint32(0xC70F6907)
    minv = np.uint32(pow(0x5BD1E995, -1, 2**32))

    def mix(k: object) -> object:
        k = k * m
        k ^= k >> np.uint32(24)
        return k * m

    def unmix(k: object) -> object:
        k = k * minv
        k ^= k >> np.uint32(24)
        return k * minv

    with np.errstate(over="ignore"):
        low = np.arange(1, 2 * n + 64, dtype=np.uint32) * np.uint32(2654435761)
        state = ((seed ^ np.uint32(4)) * m) ^ mix(low)
        high = unmix((state * m) ^ np.uint32(0x12345678))  # every (low, high) reaches one pre-final state
    bits = (high.astype(np.uint64) << np.uint64(32)) | low.astype(np.uint64)
    values = bits.view(np.float64)
    values = np.unique(values[np.isfinite(values) & (values != 0)])[:n]
    np.random.default_rng(0).shuffle(values)
    return values


def colliding_ints(n: int) -> object:
    """SANDBOX side: ``n`` distinct int64 values of one pandas hash (klib's map is linear over GF(2))."""
    import numpy as np

    pivots: dict[int, tuple[int, int]] = {}
    kernel: list[int] = []
    for b in range(64):
        k = 1 << b
        h, combo = ((k >> 33) ^ k ^ (k << 11)) & 0xFFFFFFFF, k
        while h:
            p = h.bit_length() - 1
            if p not in pivots:
                pivots[p] = (h, combo)
                break
            h, combo = h ^ pivots[p][0], combo ^ pivots[p][1]
        if not h:
            kernel.append(combo)  # maps to 0: any XOR of these has hash 0
    out = []
    for i in range(1, n + 1):
        v = 0
        for j, vec in enumerate(kernel):
            if i >> j & 1:
                v ^= vec
        out.append(v)
    values = np.array(out, dtype=np.uint64).view(np.int64)
    np.random.default_rng(0).shuffle(values)
    return values


def pandas_float_hash(values: object) -> int:
    """HOST side: how many distinct pandas float64 hashes ``values`` have (the murmur2 pandas uses)."""
    with np.errstate(over="ignore"):
        bits = np.asarray(values, dtype=np.float64).view(np.uint64)
        m = np.uint32(0x5BD1E995)

        def mix(k: object) -> object:
            k = k * m
            k ^= k >> np.uint32(24)
            return k * m

        h = (np.uint32(0xC70F6907) ^ np.uint32(4)) * m
        h = (h ^ mix(bits.astype(np.uint32))) * m
        h ^= mix((bits >> np.uint64(32)).astype(np.uint32))
        h ^= h >> np.uint32(13)
        h *= m
        h ^= h >> np.uint32(15)
    return len(np.unique(h))


def pandas_int_hashes(values: object) -> int:
    keys = np.asarray(values).view(np.uint64)
    return len(np.unique(((keys >> np.uint64(33)) ^ keys ^ (keys << np.uint64(11))) & np.uint64(0xFFFFFFFF)))


def float_index(n: int) -> object:
    import numpy as np
    import pandas as pd

    return pd.Series(np.zeros(n), index=pd.Index(colliding_floats(n)))


def int_series(n: int) -> object:
    import pandas as pd

    return pd.Series(colliding_ints(n))


def float_frame(n: int) -> object:
    import pandas as pd

    return pd.DataFrame({"x": colliding_floats(n)})


def int_array(n: int) -> object:
    return colliding_ints(n)


def _returned(fn: object) -> object:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
    with OSSandbox(cfg) as sb:
        try:
            return sb.execute(fn, N)
        except SandboxSecurityError as exc:
            assert "hash" in str(exc).lower(), exc
            return None


def int_index(n: int) -> object:
    import numpy as np
    import pandas as pd

    return pd.Series(np.zeros(n), index=pd.Index(colliding_ints(n)))


def test_int64_index_labels_are_refused_already() -> None:
    # the control: the one door _check_int64 closes, on the same path
    assert _returned(int_index) is None


def test_generators_collide_as_pandas_hashes_them() -> None:
    floats, ints = colliding_floats(N), colliding_ints(N)
    assert len(np.unique(floats)) == N and pandas_float_hash(floats) == 1
    assert len(np.unique(ints)) == N and pandas_int_hashes(ints) == 1


@pytest.mark.parametrize(
    ("make", "where"),
    [
        (float_index, "float64 index labels"),
        (int_series, "a Series' int64 values"),
        (float_frame, "a DataFrame's float64 column"),
        (int_array, "a plain int64 ndarray"),
    ],
)
def test_colliding_64bit_values_are_refused(make: object, where: str) -> None:
    value = _returned(make)
    if value is None:
        return
    got = value.index if make is float_index else value
    got = np.asarray(got if not hasattr(got, "columns") else got["x"])
    distinct = pandas_float_hash(got) if got.dtype.kind == "f" else pandas_int_hashes(got)
    assert len(np.unique(got)) == N and distinct == 1  # what the host holds: N values, one hash
    raise AssertionError(
        f"the host accepted {where}: {N} distinct values of one pandas hash value "
        f"(a {type(value).__name__}); value_counts/unique/is_unique on it is quadratic on the host"
    )
