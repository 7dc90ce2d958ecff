"""The restricted codec: round trips, and hostile bytes only ever raise SandboxSecurityError."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glsandbox_kernel import SandboxSecurityError
from glsandbox_kernel.codec import UnsupportedType, decode, encode
from glsandbox_kernel.protocol import FrameChannel

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.complex_numbers(allow_nan=False),
    st.decimals(allow_nan=False),
    st.fractions(),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.timedeltas(),
)
hashables = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.binary())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(hashables, inner, max_size=5),
        st.frozensets(hashables, max_size=5),
        st.sets(hashables, max_size=5),
    ),
    max_leaves=30,
)


@given(values)
@settings(max_examples=300, deadline=None)
def test_round_trip(value: object) -> None:
    assert decode(encode(value)) == value


@given(st.binary(max_size=200))
@settings(max_examples=2000, deadline=None)
def test_hostile_bytes_raise_only_security_errors(data: bytes) -> None:
    try:
        decode(data)
    except SandboxSecurityError:
        pass


def test_nan_round_trips() -> None:
    assert math.isnan(decode(encode(float("nan"))))


def test_unsupported_types_are_named() -> None:
    class Thing:
        pass

    with pytest.raises(UnsupportedType, match="Thing"):
        encode([1, Thing()])
    with pytest.raises(UnsupportedType):
        encode(lambda: 0)


def test_decoder_limits() -> None:
    deep = b"l\x00\x00\x00\x01" * 500 + b"N"
    with pytest.raises(SandboxSecurityError, match="too deep"):
        decode(deep)
    with pytest.raises(SandboxSecurityError, match="count larger"):
        decode(b"l\xff\xff\xff\xff")
    with pytest.raises(SandboxSecurityError, match="unknown tag"):
        decode(b"\x99")
    with pytest.raises(SandboxSecurityError, match="trailing"):
        decode(encode(1) + b"N")
    np = pytest.importorskip("numpy")
    obj = b"n" + b"s" + struct.pack(">I", 3) + b"|O8" + encode((1,)) + b"b" + struct.pack(">I", 8) + b"\0" * 8
    with pytest.raises(SandboxSecurityError, match="object dtype"):
        decode(obj)
    assert np is not None


def test_frame_channel_refuses_oversize_and_non_messages() -> None:
    import socket

    a, b = socket.socketpair()
    chan = FrameChannel(b, max_frame=1024)
    a.sendall(struct.pack(">I", 10_000))
    with pytest.raises(SandboxSecurityError, match="exceeds the cap"):
        chan.recv(timeout=1)
    chan2 = FrameChannel(a, max_frame=1024)
    payload = encode([1, 2])
    b.sendall(struct.pack(">I", len(payload)) + payload)
    with pytest.raises(SandboxSecurityError, match="type"):
        chan2.recv(timeout=1)
    assert chan2.recv(timeout=0.05) is None
    a.close()
    b.close()


def test_decoder_budget_refuses_hash_floods_and_memory_floods() -> None:
    import socket

    from glsandbox_kernel.codec import MAX_SAME_HASH, Budget

    p = 2**61 - 1
    colliding = [k * p for k in range(1, 5000)]
    assert len({hash(x) for x in colliding}) == 1
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        decode(b"S" + struct.pack(">I", 100) + b"".join(encode(x) for x in colliding[:100]))
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        decode(encode(dict.fromkeys(colliding[:100])))
    # A few colliding members are fine (honest data has them: -1 and -2 hash alike).
    assert decode(encode(set(colliding[:MAX_SAME_HASH]))) == set(colliding[:MAX_SAME_HASH])
    honest = set(range(200_000)) | {str(i) for i in range(1000)}
    assert decode(encode(honest)) == honest
    # The worker reading the trusted host's frames skips the check (its CPU is the sandbox's);
    # the host reading the worker's still refuses.
    a, b = socket.socketpair()
    host, worker = FrameChannel(a), FrameChannel(b)
    worker.from_host = True
    host.send({"type": "call", "value": set(colliding[:100])})
    assert worker.recv(timeout=5)["value"] == set(colliding[:100])
    worker.send({"type": "result", "value": set(colliding[:100])})
    with pytest.raises(SandboxSecurityError, match="share one hash value"):
        host.recv(timeout=5)
    a.close()
    b.close()
    # Empty containers: far more host memory than frame bytes.
    flood = b"l" + struct.pack(">I", 400_000) + b"S\0\0\0\0" * 400_000
    with pytest.raises(SandboxSecurityError, match="host memory"):
        decode(flood)
    assert len(decode(flood, Budget(floor=200 * 2**20, seconds_floor=120))) == 400_000
    with pytest.raises(SandboxSecurityError, match="objects"):
        decode(encode([None] * 10_000), Budget(max_objects=5000))
    with pytest.raises(SandboxSecurityError, match="time budget"):
        decode(encode(list(range(10_000))), Budget(deadline=0.0))
    records = [{"name": f"row{i}", "value": i, "ok": True} for i in range(100_000)]
    assert decode(encode(records)) == records  # JSON-like records fit the ratio


# -- columns decoded window by window, pandas frames without copies (issue 14) ----------------


def test_str_columns_round_trip_across_pieces_and_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    from glsandbox_kernel import codec_columns

    monkeypatch.setattr(codec_columns, "PIECE", 7)  # many pieces, each a part of its own
    monkeypatch.setattr(codec_columns, "WINDOW", 16)  # many windows, some inside one str
    words = [f"w{i}-é\udcff" * (i % 5) for i in range(200)] + ["x" * 100] + [""] * 3
    cases: list[object] = [
        words,
        tuple(words),
        set(words),
        {w: i for i, w in enumerate(words)},
        {i: w for i, w in enumerate(words)},
        {w: w for w in words},
        {i: i / 2 for i in range(300)},
    ]
    for value in cases:
        back = decode(encode(value))
        assert back == value and type(back) is type(value)


def test_hostile_str_windows_and_dict_columns_raise_security_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from glsandbox_kernel import codec_columns

    monkeypatch.setattr(codec_columns, "WINDOW", 8)
    n = struct.pack(">I", 3)
    text = b"a\0b\0c\0d\0e\0f\0g"  # 7 strs for a count of 3, spread over windows
    ints = struct.pack(">I", 24) + b"\0" * 24
    bad = [
        b"L" + b"l" + b"s" + n + struct.pack(">I", len(text)) + text,
        b"L" + b"O" + b"s" + n + struct.pack(">I", len(text)) + text,  # a pandas str column
        b"L" + b"O" + b"i" + n + ints,  # an object column of ints is not a str column
        b"K" + b"s" + b"i" + n + struct.pack(">I", len(text)) + text + ints,  # keys 7, values 3
        b"K" + b"i" + b"s" + n + ints + struct.pack(">I", 3) + b"a\0b",  # keys 3, values 2
        b"K" + b"s" + b"s" + n + struct.pack(">I", 5) + b"a\0b\0c" + struct.pack(">I", 9),  # truncated
        b"K" + b"s" + b"i" + n + struct.pack(">I", 5) + b"a\0\xff\0c" + ints,  # bad UTF-8 in a key
    ]
    for data in bad:
        with pytest.raises(SandboxSecurityError):
            decode(data)


def test_pandas_values_round_trip_with_dtypes_and_index() -> None:
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    n = 1000
    frame = pd.DataFrame({"id": np.arange(n), "x": np.arange(n) / 3, "name": [f"row-{i}" for i in range(n)]})
    cases = [
        frame,
        frame.set_index("name"),
        pd.DataFrame({"o": pd.Series(["a", "b"] * 50, dtype=object), "m": ["a", None] * 50}),
        pd.DataFrame({"t": pd.to_datetime(["2020-01-01", "2021-06-01"])}, index=pd.RangeIndex(10, 30, 10)),
        pd.DataFrame([[1, 2]], columns=["a", "a"]),
        pd.DataFrame({"o": pd.Series(["x", "y", "z"], dtype=object)}, index=pd.Index(["a", "a", "b"])),
        pd.Series([1.5, 2.5, None], index=pd.MultiIndex.from_tuples([(1, "a"), (1, "b"), (2, "a")])),
        pd.DataFrame({("a", "b"): [1], ("a", "c"): [2]}),
        pd.Series(["s"] * 100, name="kg", index=pd.RangeIndex(5, 105)),
        pd.Index(["a", "b"], name="k"),
        pd.RangeIndex(3, 10, 2),
    ]
    for value in cases:
        back = decode(bytearray(encode(value)))
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(back, value)
        elif isinstance(value, pd.Series):
            pd.testing.assert_series_equal(back, value)
        else:
            pd.testing.assert_index_equal(back, value)
    # A frame read into its own buffer: number columns are views of it, the str column one object array.
    back = decode(bytearray(encode(pd.DataFrame({"id": np.arange(100_000), "s": ["v"] * 100_000}))))
    assert back["id"].to_numpy().base is not None and str(back["s"].dtype) == str(frame["name"].dtype)


def test_hostile_pandas_headers_raise_security_errors() -> None:
    pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    col = encode(np.arange(3))
    meta = {"names": ["a"], "dtypes": ["int64"], "index_name": None, "index_dtype": "int64"}
    bad = [
        b"P" + encode({**meta, "range": (0, 3, 0)}) + col,  # step 0
        b"P" + encode({**meta, "range": (0, 3)}) + col,  # not three ints
        b"P" + encode({**meta, "range": (0, 3, 1), "names": ["a", "b"]}) + col,  # names and columns differ
        b"R" + encode({**meta, "dtypes": [], "range": (0, 3, 1)}),  # a Series without its column
        b"P" + encode([1, 2]),  # not a header
        b"P" + encode({**meta, "range": (0, 3, 1), "dtypes": [1]}) + col,  # a dtype that is no str
    ]
    for data in bad:
        with pytest.raises(SandboxSecurityError):
            decode(data)


def test_item_by_item_parts_are_joined_but_array_memory_is_not_copied() -> None:
    """A million small items are not a million small parts beside the value (the worker's memory)."""
    from glsandbox_kernel.codec import encode_parts

    mixed = [(i, str(i)) for i in range(50_000)]
    parts = encode_parts(mixed)
    assert len(parts) < 50 and decode(b"".join(parts)) == mixed
    np = pytest.importorskip("numpy")
    arr = np.arange(100_000)
    value = [arr, *mixed[:10_000], {"a": arr}]
    parts = encode_parts(value)
    views = [p for p in parts if isinstance(p, memoryview)]
    assert len(views) == 2 and all(np.shares_memory(np.frombuffer(p, dtype=np.uint8), arr) for p in views)
    back = decode(bytearray(b"".join(parts)))
    assert (back[0] == arr).all() and back[1:-1] == mixed[:10_000] and (back[-1]["a"] == arr).all()


# -- the fast path for small control frames (MessagePack, issue 14) ----------------------------

msgpack = pytest.importorskip("msgpack")
plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(), st.binary()),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(), inner, max_size=5)),
    max_leaves=30,
)


@given(st.dictionaries(st.text(), plain, max_size=6))
@settings(max_examples=300, deadline=None)
def test_fast_path_round_trips_plain_messages_exactly(message: dict[str, object]) -> None:
    from glsandbox_kernel import codec_fast

    data = codec_fast.encode(message)
    assert data is not None and data[0] in codec_fast.FIRST_BYTES
    back = decode(data)
    assert repr(back) == repr(message)  # same types all the way down (repr tells list from tuple, NaN too)


def test_fast_path_leaves_every_other_type_to_the_full_codec() -> None:
    """Whatever MessagePack would not give back as its own type is not sent that way."""
    from glsandbox_kernel import codec_fast

    class Str(str):
        pass

    deep: list[object] = []
    for _ in range(codec_fast.MAX_DEPTH + 1):
        deep = [deep]
    for value in (
        (1, 2),
        {1, 2},
        bytearray(b"x"),
        memoryview(b"x"),
        {1: "int key"},
        {b"k": "bytes key"},
        Str("sub"),
        2**64,
        "\ud800",
        1 + 2j,
        deep,
        [0] * (codec_fast.MAX_NODES + 1),
        b"x" * (codec_fast.MAX_BYTES + 1),
        [b"x" * (codec_fast.MAX_BYTES // 2 + 1)] * 2,  # the sizes are summed before anything is packed
    ):
        message = {"type": "result", "value": value}
        assert codec_fast.encode(message) is None, value
        if type(value) is Str:
            with pytest.raises(UnsupportedType):  # nor does the full codec let a str subclass leave
                encode(message)
            continue
        back = decode(encode(message))
        assert type(back["value"]) is type(value) or isinstance(value, memoryview)
    assert codec_fast.encode([1]) is None  # type: ignore[arg-type]


def test_fast_path_hostile_frames_raise_security_errors() -> None:
    from glsandbox_kernel import codec_fast

    head = b"\x81\xa4type"  # {"type": ...
    cases = {
        "declared str longer than the frame": head + b"\xdb\xff\xff\xff\xff" + b"x" * 8,
        "declared bin longer than the frame": head + b"\xc6\x7f\xff\xff\xff" + b"x",
        "declared array longer than the frame": head + b"\xdd\x7f\xff\xff\xff" + b"\xc0",
        "declared map longer than the frame": b"\xdf\x7f\xff\xff\xff" + b"\xa1a\xc0",
        "truncated": head,
        "trailing bytes": head + b"\xc0\xc0",
        "invalid UTF-8": head + b"\xa2\xff\xfe",
        "fixext": head + b"\xd4\x05\x00",
        "empty ext": head + b"\xc7\x00\x07",
        "timestamp ext": head + b"\xd6\xff\x00\x00\x00\x01",
        "int key": b"\x81\x01\xc0",
        "bytes key": b"\x81\xc4\x01k\xc0",
        "nested non-str key": head + b"\x81\x01\xc0",
        "too deep for the walk": head + b"\x91" * (codec_fast.MAX_DEPTH + 2) + b"\xc0",
        "too deep for msgpack": head + b"\x91" * 5000 + b"\xc0",
        "larger than a fast frame": head + b"\xc5\xff\xff" + b"x" * 65535,
        "reserved byte": head + b"\xc1",
    }
    for what, data in cases.items():
        with pytest.raises(SandboxSecurityError):
            decode(data)
            pytest.fail(what)


@given(st.binary(max_size=200))
@settings(max_examples=2000, deadline=None)
def test_hostile_fast_frames_raise_only_security_errors(tail: bytes) -> None:
    for first in (b"\x81", b"\x8f", b"\xde\x00\x02", b"\xdf\x00\x00\x00\x01"):
        try:
            value = decode(first + tail)
        except SandboxSecurityError:
            continue
        assert type(value) is dict and all(type(k) is str for k in value)


def test_frame_channel_sends_fast_frames_only_when_told_and_mirrors_on_the_worker() -> None:
    import socket

    a, b = socket.socketpair()
    host, worker = FrameChannel(a), FrameChannel(b)
    worker.mirror_fast = True
    worker.send({"type": "hello"})
    assert a.recv(65536)[4:5] == b"d"  # the full codec until the host sends a fast frame
    host.fast_send = True
    host.send({"type": "call", "fn_ref": 1, "args": b"\x80"})
    assert worker.recv(timeout=1) == {"type": "call", "fn_ref": 1, "args": b"\x80"} and worker.fast_send
    worker.send({"type": "result", "ok": True, "value": [1, "x"]})
    assert a.recv(65536)[4] in range(0x80, 0x90)
    worker.send({"type": "result", "ok": True, "value": (1, "x")})  # a tuple: the full codec
    assert host.recv(timeout=1) == {"type": "result", "ok": True, "value": (1, "x")}
    worker.max_send = 10  # past the peer's cap: refused before sending, as on the full path
    from glsandbox_kernel.exceptions import FrameTooLarge

    with pytest.raises(FrameTooLarge):
        worker.send({"type": "result", "value": "x" * 20})
    a.close()
    b.close()


def test_flat_messages_are_checked_like_nested_ones_and_the_workers_decode_still_refuses_garbage() -> None:
    """The one-loop check of a flat map refuses what the walk refuses; the worker's decode of the
    host's frames (no allowlist walk) still gives only maps and raises SandboxSecurityError on garbage."""
    import socket

    from glsandbox_kernel import codec_fast

    assert codec_fast.encode({"type": "result", 1: "int key at the top"}) is None  # type: ignore[dict-item]
    assert codec_fast.encode({"type": "result", "k" * (codec_fast.MAX_BYTES + 1): 1}) is None  # the key's size
    assert codec_fast.encode({"type": "result", "value": (1,)}) is None
    many = {f"k{i}": i for i in range(40)}  # past the one-loop check's size: the walk, same answer
    assert codec_fast.decode(codec_fast.encode({"type": "r", **many}) or b"") == {"type": "r", **many}
    message = {"type": "call", "fn_ref": 1, "args": b"\x80", "value": [{"a": None}]}
    assert codec_fast.decode_trusted(codec_fast.encode(message) or b"") == message
    for garbage in (b"\x91\xc0", b"\x81\xa4type", b"\x81\xa4type\xc1", b"\x81\xa2\xff\xfe\xc0"):
        with pytest.raises(SandboxSecurityError):
            codec_fast.decode_trusted(garbage)
    a, b = socket.socketpair()
    host, worker = FrameChannel(a), FrameChannel(b)
    worker.from_host = True
    a.sendall(len(b"\x81\xa4type\x01").to_bytes(4, "big") + b"\x81\xa4type\x01")  # "type" not a str
    with pytest.raises(SandboxSecurityError):
        worker.recv(timeout=1)
    host.fast_send = True
    host.send(message)
    assert worker.recv(timeout=1) == message
    a.close()
    b.close()
