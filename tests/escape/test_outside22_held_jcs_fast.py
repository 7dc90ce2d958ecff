"""Outside review (22nd), what held: the JCS shortcut (``audit/_jcs_fast.py``) writes the bytes of the
reference encoder (``audit/canonical.jcs_dumps``) wherever it answers, and the verifier's view of a line
it wrote (``json.loads`` then the reference) is the same bytes.

Differential, generated (hypothesis: nested dicts/lists of None, bools, unbounded ints, every float
incl. NaN/inf/-0.0/subnormals, any text incl. lone surrogates, U+2028, NUL, non-ASCII and surrogate
keys) plus hand-picked values and 100k random doubles against ``js_number``. Measured: no divergence;
the shortcut declines (None) exactly where the reference must decide (lone surrogates, non-ASCII keys,
ints past 2**53, NaN, subclasses, tuples, depth > 64).
"""

from __future__ import annotations

import json
import math
import random
import struct
from collections import OrderedDict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glsandbox_kernel.audit import _jcs_fast
from glsandbox_kernel.audit.canonical import jcs_dumps, js_number

SPECIAL: list[Any] = [
    0.0,
    -0.0,
    1e21,
    1e-7,
    5e-324,
    1e16,
    1e-4,
    9.999999999999999e-05,
    60.0,
    2**53,
    -(2**53),
    2**53 + 1,
    10**400,
    True,
    False,
    1,
    '\u2028\u2029\x00\x1f\x7f"\\',
    "\ud800",
    "\ud83d\ude00",
    "\U0001f600",
    float("nan"),
    float("inf"),
]
KEYS = st.text() | st.sampled_from(["a", "b", "A", "_", "\x7f", "\u00e9", "\ud800", "\U0001f600", "\uff61", "metrics"])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sampled_from(SPECIAL)
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=5) | st.dictionaries(KEYS, c, max_size=6), max_leaves=30)


def _same_as_reference(obj: Any) -> None:
    fast = _jcs_fast.encode(obj)
    if fast is None:
        return
    assert fast == jcs_dumps(obj), obj
    assert jcs_dumps(json.loads(fast)) == fast  # what verify recomputes from the line
    assert _jcs_fast.encode(obj) == fast  # again, with its key-set and float caches warm


@settings(max_examples=1500, suppress_health_check=list(HealthCheck), deadline=None)
@given(VALUES)
def test_shortcut_matches_reference_on_generated_data(obj: Any) -> None:
    _same_as_reference(obj)


def test_shortcut_declines_what_the_reference_must_decide() -> None:
    class Sub(dict):  # type: ignore[type-arg]
        pass

    deep: Any = 1
    for _ in range(70):
        deep = [deep]
    for value in ["\ud800", {"\u00e9": 1}, 2**53 + 1, float("nan"), Sub(a=1), OrderedDict(a=1), (1,), True.__class__]:
        assert _jcs_fast.encode({"a": value}) is None, value
    assert _jcs_fast.encode(deep) is None
    record = {"b": 1.5e-7, "a": [True, 1, -0.0, None, "\u2028"], "c": {"z": 1e21, "y": 60.0}}
    assert (
        _jcs_fast.encode(record)
        == jcs_dumps(record)
        == (b'{"a":[true,1,0,null,"\xe2\x80\xa8"],"b":1.5e-7,"c":{"y":60,"z":1e+21}}')
    )


def test_floats_match_js_number() -> None:
    rnd = random.Random(22)
    for i in range(100_000):
        if i % 2:
            value = struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0]
        else:
            value = rnd.uniform(-1, 1) * 10.0 ** rnd.randint(-330, 307)
        if math.isfinite(value):
            assert _jcs_fast.encode(value) == js_number(value).encode(), value


def test_long_strings_and_nesting_at_the_depth_limit() -> None:
    long = {"s": '\u2028\x00"\\é' * 2_000_000}  # 10 M characters
    assert _jcs_fast.encode(long) == jcs_dumps(long)
    for depth in (63, 64, 65, 66, 150):
        nested: Any = {"leaf": 1.5}
        for i in range(depth):
            nested = {"k": nested} if i % 2 else [nested]
        fast = _jcs_fast.encode(nested)
        assert fast is None or fast == jcs_dumps(nested), depth
