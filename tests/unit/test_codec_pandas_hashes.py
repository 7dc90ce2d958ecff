"""Hash-collision floods through pandas labels (review 10 finding 3), host side of the codec.

Each payload is made as the sandbox makes it (``codec.encode`` of a real
pandas value); the host's ``codec.decode`` must refuse it as a flood before
pandas hashes anything, and ordinary labels (repeated, str, unhashable) must
still decode as they were.
"""

from __future__ import annotations

from typing import Any

import pytest

from glsandbox_kernel import codec
from glsandbox_kernel.exceptions import SandboxSecurityError

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")

P = 2**61 - 1
N = 2000  # far past MAX_SAME_HASH; small enough that even the quadratic build would be quick here


def colliding(n: int) -> list[int]:
    """Distinct ints that all hash to 1 (CPython: the value modulo 2**61 - 1, no secret)."""
    keys = [1 + k * P for k in range(n)]
    assert len({hash(k) for k in keys}) == 1
    return keys


def roundtrip(value: Any) -> Any:
    return codec.decode(codec.encode(value))


def test_tuple_index_flood_is_refused() -> None:
    # the reproducer's shape: (k, 0) tuples hash alike as a whole, as their first members do
    keys = [(k, 0) for k in colliding(N)]
    series = pd.Series(np.zeros(N), index=pd.Index(keys, tupleize_cols=False, dtype=object))
    with pytest.raises(SandboxSecurityError, match="index labels share one hash value"):
        roundtrip(series)
    # distinct tuple hashes, one level flooded: pandas factorizes each level on its own
    series.index = pd.MultiIndex.from_arrays([colliding(N), range(N)])
    assert len(set(map(hash, series.index))) == N
    with pytest.raises(SandboxSecurityError, match=r"index label \(level 0\)s share one hash value"):
        roundtrip(series)


def test_multiindex_second_level_flood_is_refused() -> None:
    index = pd.MultiIndex.from_arrays([range(N), colliding(N)])
    with pytest.raises(SandboxSecurityError, match=r"index label \(level 1\)s share one hash value"):
        roundtrip(pd.Series(np.zeros(N), index=index))


def test_object_index_flood_is_refused() -> None:
    index = pd.Index(colliding(N), dtype=object)
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        roundtrip(pd.Series(np.zeros(N), index=index))
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        roundtrip(index)


def test_tuple_labels_whose_whole_hash_collides_are_refused() -> None:
    # members ((k, 0),) : level 0 holds tuples that all hash alike (their members do)
    index = pd.Index([((k, 0), 1) for k in colliding(N)], tupleize_cols=False, dtype=object)
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        roundtrip(pd.Series(np.zeros(N), index=index))


def test_column_name_flood_is_refused() -> None:
    frame = pd.DataFrame(np.zeros((1, N)))
    frame.columns = colliding(N)
    with pytest.raises(SandboxSecurityError, match="column names share one hash value"):
        roundtrip(frame)
    frame.columns = pd.MultiIndex.from_arrays([colliding(N), range(N)])
    with pytest.raises(SandboxSecurityError, match=r"column name \(level 0\)"):
        roundtrip(frame)


def test_repeated_labels_are_not_a_flood() -> None:
    # equal labels cost pandas nothing extra: thousands of repeats of one (even colliding) value decode
    index = pd.MultiIndex.from_product([list("abcdefghij"), range(500)])
    series = pd.Series(np.arange(len(index)), index=index)
    pd.testing.assert_series_equal(roundtrip(series), series)
    repeated = pd.Index([1 + P] * N + colliding(MAX := codec.MAX_SAME_HASH), dtype=object)
    assert len(set(map(hash, repeated))) == 1 and MAX == 32
    out = roundtrip(pd.Series(np.zeros(len(repeated)), index=repeated))
    assert list(out.index) == list(repeated)


def test_unhashable_object_labels_still_decode() -> None:
    index = pd.Index([[i] for i in range(100)], dtype=object)
    out = roundtrip(pd.Series(np.zeros(100), index=index))
    assert list(out.index) == [[i] for i in range(100)]


def test_sets_and_dict_keys_still_checked_with_duplicates_counted_once() -> None:
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        roundtrip(set(colliding(N)))
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        roundtrip(dict.fromkeys(colliding(N), 0))


def pandas_int64_colliding(n: int) -> Any:
    """Distinct int64s with one pandas int64 hash ((k >> 33) ^ k ^ (k << 11), 32 bits): its kernel over GF(2)."""

    def image(x: int) -> int:
        return ((x >> 33) ^ x ^ (x << 11)) & 0xFFFFFFFF

    pivots: dict[int, tuple[int, int]] = {}
    kernel: list[int] = []
    for i in range(63):  # sign bit clear
        img, combo = image(1 << i), 1 << i
        for b in range(31, -1, -1):
            if (img >> b) & 1:
                if b not in pivots:
                    pivots[b] = (img, combo)
                    break
                img, combo = img ^ pivots[b][0], combo ^ pivots[b][1]
        if img == 0:
            kernel.append(combo)
    values = []
    for bits in range(1, n + 1):
        v = 0
        for j, k in enumerate(kernel):
            if (bits >> j) & 1:
                v ^= k
        values.append(v)
    assert len({image(v) for v in values}) == 1 and len(set(values)) == n
    return np.array(values, dtype=np.int64)


def test_int64_index_flood_is_refused() -> None:
    keys = pandas_int64_colliding(N)
    with pytest.raises(SandboxSecurityError, match="pandas int64 hash value"):
        roundtrip(pd.Series(np.zeros(N), index=pd.Index(keys)))
    with pytest.raises(SandboxSecurityError, match="pandas int64 hash value"):
        roundtrip(pd.Series(np.zeros(N), index=pd.Index(keys.view("M8[ns]"))))


def test_ordinary_int64_and_datetime_indexes_decode() -> None:
    rng = np.random.default_rng(0)
    for index in (
        pd.Index(rng.integers(-(2**62), 2**62, 100_000)),
        pd.Index(np.repeat(np.arange(1000), 50)),  # repeated labels are not a flood
        pd.date_range("2020-01-01", periods=10_000, freq="min"),
    ):
        out = roundtrip(pd.Series(np.zeros(len(index)), index=index))
        assert out.index.equals(index)


def test_unsigned_and_complex_arrays_decode() -> None:
    # their dtype strings ('<u8', '|u1', '<c16') were refused by the plain-dtype pattern
    for arr in (np.arange(5, dtype=np.uint8), np.arange(5, dtype=np.uint64), np.ones(3, dtype=np.complex128)):
        np.testing.assert_array_equal(roundtrip(arr), arr)
        assert roundtrip(arr).dtype == arr.dtype
    assert roundtrip(np.uint32(7)) == np.uint32(7) and type(roundtrip(np.uint32(7))) is np.uint32
    index = pd.Index(np.random.default_rng(0).integers(0, 2**63, 10_000, dtype=np.uint64))
    assert roundtrip(pd.Series(np.zeros(len(index)), index=index)).index.equals(index)
    with pytest.raises(SandboxSecurityError, match="pandas int64 hash value"):
        roundtrip(pd.Series(np.zeros(N), index=pd.Index(pandas_int64_colliding(N).view(np.uint64))))


_M = 0x5BD1E995


def _mix(k: Any) -> Any:
    k = k * np.uint32(_M)
    k ^= k >> np.uint32(24)
    return k * np.uint32(_M)


def pandas_float64_colliding(n: int) -> Any:
    """Distinct finite float64s of one pandas float64 hash: murmur2_64to32 solved for the high word.

    After the low word ``k1`` the state is ``(C ^ mix(k1)) * M``; the high word
    ``k2`` whose ``mix`` turns that into one target state is ``unmix`` of the
    XOR (``mix`` is a bijection: odd multiplies, a shift-XOR of 24 of 32 bits).
    """
    inv = np.uint32(pow(_M, -1, 2**32))
    c = np.uint32(((0xC70F6907 ^ 4) * _M) & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        k1 = np.arange(1, 4 * n, dtype=np.uint32) * np.uint32(40503)
        k2 = ((c ^ _mix(k1)) * np.uint32(_M)) ^ np.uint32(0xBEEF)
        k2 = k2 * inv
        k2 ^= k2 >> np.uint32(24)
        k2 = k2 * inv
    values = ((k2.astype(np.uint64) << np.uint64(32)) | k1).view(np.float64)
    values = np.unique(values[np.isfinite(values) & (values != 0)])[:n]
    assert len(values) == n
    return values


def test_float64_labels_and_64bit_data_columns_floods_are_refused() -> None:
    floats, ints = pandas_float64_colliding(N), pandas_int64_colliding(N)
    x = np.random.default_rng(0).normal(size=N)
    for value, name in (
        (pd.Series(np.zeros(N), index=pd.Index(floats)), "float64"),
        (pd.Series(ints), "int64"),
        (pd.Series(ints.view("m8[ns]")), "int64"),
        (pd.DataFrame({"a": np.arange(N), "x": floats}), "float64"),
        (floats, "float64"),
        (ints.view(np.uint64), "int64"),
        (ints.reshape(-1, 4), "int64"),  # a 2-d array is one pd.DataFrame(arr) away from columns
        (x + 1j * x, "complex128"),  # the XOR of two equal float hashes: 0 for every value
        ((x + 1j * x).astype(np.complex64), "complex64"),
        ([floats, "a list around it"], "float64"),
        (np.random.default_rng(2).permutation(np.repeat(ints, 20)), "int64"),  # repeats hide no flood
        (np.random.default_rng(3).permutation(np.concatenate([x, np.arange(300_000) / 7, floats])), "float64"),
    ):
        with pytest.raises(SandboxSecurityError, match=f"share one pandas {name} hash value"):
            roundtrip(value)


def test_list_labels_pandas_makes_int64_of_are_checked_as_int64() -> None:
    # an object index of Python ints travels as a list (distinct Python hashes); pd.Index makes it int64
    index = pd.Index([int(k) for k in pandas_int64_colliding(N)], dtype=object)
    with pytest.raises(SandboxSecurityError, match="pandas int64 hash value"):
        roundtrip(pd.Series(np.zeros(N), index=index))


def test_ordinary_64bit_data_decodes() -> None:
    rng = np.random.default_rng(1)
    n = 300_000
    nans = (np.uint64(0x7FF8000000000001) + np.arange(1000, dtype=np.uint64)).view(np.float64)
    for value in (
        rng.integers(-(2**63), 2**63 - 1, n),
        rng.normal(size=n),
        np.arange(n) / 3,
        np.arange(n, dtype=np.uint64),
        np.ones(n),
        rng.integers(0, 10, n),  # category codes: few values, repeated out of order
        np.repeat(rng.normal(size=500), 600),  # repeated identical values: one key each
        np.tile(np.arange(1000), 300).astype("M8[s]"),
        np.concatenate([np.zeros(100), -np.zeros(100), nans]),  # pandas folds 0/-0 and every NaN: 2 keys
        rng.normal(size=n) + 1j * rng.normal(size=n),
        np.zeros(n, dtype=np.complex128),
        rng.integers(0, 2**62, (1000, 300)),
    ):
        out = roundtrip(value)
        np.testing.assert_array_equal(out, value)
        assert out.dtype == value.dtype
    frame = pd.DataFrame({"id": np.arange(n), "x": np.arange(n) / 3, "r": rng.normal(size=n)})
    assert roundtrip(frame).equals(frame)
