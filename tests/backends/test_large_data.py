"""Large data through the boundary: it arrives, or fails with a clear error; never a crash (issue 14).

Real workers at the documented presets. Each case below used to kill the
worker (a frame cap below the memory limit, a receive buffer copied twice,
encoding running out of memory); now a value that fits arrives whole and one
that does not raises SandboxMemoryError with the worker and its state kept.
"""

from __future__ import annotations

import os
import struct

import pytest

from glsandbox_kernel import OSSandbox, SandboxMemoryError, SandboxSecurityError, create_config_by_level
from glsandbox_kernel.codec import decode, encode

np = pytest.importorskip("numpy")

MB100 = 100 * 2**20


def _big_array() -> object:
    import numpy

    return numpy.arange(MB100 // 8, dtype=numpy.int64)


def test_100mb_array_result_arrives_at_moderate_default() -> None:
    with OSSandbox(create_config_by_level("moderate")) as box:
        value = box.execute(_big_array)
        assert value.nbytes == MB100
        assert value[0] == 0 and value[-1] == MB100 // 8 - 1
        assert bool((value[:1000] == np.arange(1000)).all())
        value[0] = 7  # the caller owns it: writable, as a pickled array would be
        assert box.execute(lambda: 1 + 1) == 2


def test_100mb_array_argument_at_strict_arrives_and_keeps_state() -> None:
    """A 100 MB argument fits STRICT's 256 MiB of resident memory: it arrives whole (it crashed the worker)."""
    with OSSandbox(create_config_by_level("strict")) as box:
        pid = box.execute(os.getpid)
        box.execute(lambda: setattr(__import__("builtins"), "_kept", 41))
        assert box.execute(lambda a: a.nbytes, np.ones(MB100 // 8)) == MB100 // 8 * 8
        assert box.execute(os.getpid) == pid  # the same worker ...
        assert box.execute(lambda: __import__("builtins")._kept + 1) == 42  # ... with its state
        # An argument arrives writable (out-of-band buffers, no copies).
        assert box.execute(lambda a: (int(a.sum()), a.flags.writeable), np.ones(2**20)) == (2**20, True)


def test_argument_beyond_the_memory_limit_is_refused_before_sending() -> None:
    with OSSandbox(create_config_by_level("strict")) as box:
        pid = box.execute(os.getpid)
        with pytest.raises(SandboxMemoryError, match="cannot be sent"):
            box.execute(len, b"x" * (300 * 2**20))
        assert box.execute(os.getpid) == pid


def test_million_item_dict_at_strict_arrives_or_fails_cleanly() -> None:
    def build() -> dict[str, int]:
        return {f"k{i}": i for i in range(1_000_000)}

    def build_mixed() -> dict[int, tuple[int, str]]:
        return {i: (i, str(i)) for i in range(1_000_000)}

    with OSSandbox(create_config_by_level("strict")) as box:
        for fn in (build, build_mixed):
            try:
                value = box.execute(fn)
            except SandboxMemoryError:
                pass
            except SandboxSecurityError as exc:
                # 4M objects to decode: on a loaded machine STRICT's 30 s can run out while the
                # host decodes them; refused under the decoding budget, the worker replaced.
                assert "time budget" in str(exc)
            else:
                assert len(value) == 1_000_000
            assert box.execute(lambda: 1 + 1) == 2


def test_million_row_dataframe_result_arrives_with_its_dtypes() -> None:
    """A 1M-row DataFrame with a str column: columns in pieces, decoded window by window (issue 14)."""
    pd = pytest.importorskip("pandas")

    def build() -> object:
        import numpy
        import pandas

        n = 1_000_000
        return pandas.DataFrame({"id": numpy.arange(n), "name": [f"row-{i}" for i in range(n)]})

    with OSSandbox(create_config_by_level("moderate")) as box:
        value = box.execute(build)
        assert isinstance(value, pd.DataFrame) and len(value) == 1_000_000
        assert value["name"].iloc[-1] == "row-999999" and int(value["id"].iloc[-1]) == 999_999
        assert str(value["name"].dtype) == str(pd.Series(["a"]).dtype)  # the worker's str dtype
        assert isinstance(value.index, pd.RangeIndex)
        assert box.execute(lambda: 1 + 1) == 2


def test_result_over_the_hosts_cap_is_a_memory_error_not_a_crash() -> None:
    """300 MB of (not resident) zero pages: more than STRICT's frame cap; refused by the worker, state kept."""
    with OSSandbox(create_config_by_level("strict")) as box:
        pid = box.execute(os.getpid)
        with pytest.raises(SandboxMemoryError, match="larger than this session accepts"):
            box.execute(lambda: [bytes(150 * 2**20), bytes(150 * 2**20)])
        assert box.execute(os.getpid) == pid
        assert box.execute(lambda: 1 + 1) == 2


def test_an_explicit_frame_cap_is_kept() -> None:
    config = create_config_by_level("moderate", max_frame_bytes=64 * 1024)
    with OSSandbox(config) as box:
        with pytest.raises(SandboxMemoryError, match="max_frame_bytes") as info:
            box.execute(lambda: b"x" * 200_000)
        assert info.value.limit == 64 * 1024
        assert box.execute(lambda: 1 + 1) == 2


# -- the columnar encoding of homogeneous containers (hostile bytes) ---------------------------


def test_columns_round_trip_and_fall_back() -> None:
    cases: list[object] = [
        list(range(-100, 100)),
        tuple(x / 7 for x in range(100)),
        {str(i) for i in range(100)},
        frozenset(range(100)),
        {f"k{i}": i for i in range(100)},
        {i: f"v{i}\udcff" for i in range(100)},  # lone surrogates survive
        ["a\0b"] * 100,  # NUL in a str: item by item
        [2**70] * 100,  # past 64 bits: item by item
        [True] * 100,  # bools are not ints here
        [""] * 100,
    ]
    for value in cases:
        back = decode(encode(value))
        assert back == value and type(back) is type(value)
    assert encode(list(range(100)))[:1] == b"L"
    assert encode({f"k{i}": i for i in range(100)})[:1] == b"K"


def _column(kind: bytes, raw: bytes) -> bytes:
    return kind + struct.pack(">I", len(raw)) + raw


def test_hostile_columns_raise_security_errors() -> None:
    from glsandbox_kernel.codec import Budget

    n = struct.pack(">I", 100)
    bad = [
        b"L" + b"l" + b"i" + n + struct.pack(">I", 8 * 99) + b"\0" * (8 * 99),  # short
        b"L" + b"l" + b"s" + n + struct.pack(">I", 3) + b"a\0b",  # 2 strs, not 100
        b"L" + b"l" + b"s" + n + struct.pack(">I", 99) + b"\xff" * 99,  # bad UTF-8
        b"L" + b"x" + b"i" + n,  # unknown container
        b"L" + b"l" + b"i" + struct.pack(">I", 2**32 - 1),  # count larger than the data
        b"K" + b"s" + b"q" + n,  # unknown kind
    ]
    for data in bad:
        with pytest.raises(SandboxSecurityError):
            decode(data)
    # The whole column is charged before any item is built.
    big = encode(list(range(100_000)))
    with pytest.raises(SandboxSecurityError, match="objects"):
        decode(big, Budget(max_objects=50_000))
    strs = encode([str(i) for i in range(100_000)])
    with pytest.raises(SandboxSecurityError, match="host memory"):
        decode(strs, Budget(ratio=1, floor=0))


def test_column_set_members_and_dict_keys_are_checked_for_hash_floods(monkeypatch: pytest.MonkeyPatch) -> None:
    from glsandbox_kernel import codec

    p = 2**61 - 1
    colliding = [1, 1 + p, 1 + 2 * p, 1 + 3 * p, *range(10, 110)]  # 4 share a hash, all < 2**63
    monkeypatch.setattr(codec, "MAX_SAME_HASH", 3)
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        decode(encode(set(colliding)))
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        decode(encode(dict.fromkeys(colliding, 0)))
