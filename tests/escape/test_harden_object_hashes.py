"""Harden: object-dtype pandas columns and indexes hashed by pandas' object table, unchecked.

The codec refused 64-bit number columns of one pandas hash and object index
labels of one *Python* hash, but not an object column's values at all, and
it counted object labels by Python's hash where pandas' object table
(``kh_python_hash_func``) slots them by that hash folded to 32 bits
(``(h >> 32) ^ h``), tuples by their items' folded hashes. Measured on the
host (pandas 3.1.1, 20 000 values): an object Series of ints
``i * (2**61 - 1) + 5`` (one Python hash) ``value_counts`` 11.8 s and
``drop_duplicates`` 2.3 s of CPU; ints ``(a << 32) | (a ^ c)`` (distinct
Python hashes, one fold) 9.8 s, as an object index ``is_unique`` 2.8 s and
``.loc`` after ``set_index`` 2.4 s; 1-tuples of those 12.4 s; random ones
0.003 s. Decoding itself builds no table (``pd.Series(list, dtype=object)``
0.001 s): the first ordinary pandas call freezes the host instead.

Expected: such a value is refused with SandboxSecurityError while decoding
(linear check); an ordinary object column (mixed values, many NaNs, lists) still decodes.
"""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.backends.registry import backends
from glsandbox_kernel.codec_hashes import pandas_object_hash
from glsandbox_kernel.exceptions import SandboxSecurityError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pd = pytest.importorskip("pandas")
OK, WHY = backends()["namespace"].available()
pytestmark = [pytest.mark.skipif(not OK, reason=f"namespace: {WHY}"), pytest.mark.timeout(300)]

N = 3000  # far past MAX_SAME_HASH (32)


def same_python_hash(n: int) -> list[int]:
    """SANDBOX side: ``n`` distinct ints past 64 bits of one Python hash (it is the value mod 2**61 - 1)."""
    return [i * (2**61 - 1) + 5 for i in range(1, n + 1)]


def same_fold(n: int) -> list[int]:
    """SANDBOX side: ``n`` ints of distinct Python hashes that pandas folds to one 32-bit hash."""
    return [(a << 32) | (a ^ 0x1234) for a in range(1, n + 1)]


def big_int_frame(n: int) -> object:
    import pandas as pd

    return pd.DataFrame({"x": pd.Series(same_python_hash(n), dtype=object)})


def mixed_series(n: int) -> object:
    import pandas as pd

    return pd.Series([*same_fold(n), "tail"], dtype=object)


def object_index(n: int) -> object:
    import random

    import pandas as pd

    labels = same_fold(n)
    random.Random(0).shuffle(labels)
    return pd.Series(0, index=pd.Index(labels, dtype=object))


def tuple_series(n: int) -> object:
    import pandas as pd

    return pd.Series([(v,) for v in same_fold(n)], dtype=object)


def ordinary(n: int) -> object:
    import pandas as pd

    vals: list[object] = [float("nan")] * 100 + [None] * 50 + ["s", b"b", 2.5, (1, "a"), [1, 2], [1, 2]]
    vals += list(range(n)) + [(i, float("nan")) for i in range(n)]
    labels = [*range(len(vals) - 1), "last"]  # an object index of ordinary labels
    return pd.DataFrame({"x": vals}, index=pd.Index(labels, dtype=object), dtype=object)


def _run(fn: object) -> object:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.NAMESPACE)
    with OSSandbox(cfg) as sb:
        return sb.execute(fn, N)


@pytest.mark.parametrize("make", [big_int_frame, mixed_series, object_index, tuple_series])
def test_colliding_object_values_are_refused(make: object) -> None:
    try:
        value = _run(make)
    except SandboxSecurityError as exc:
        assert "hash" in str(exc).lower(), exc
        return
    got = value.index if make is object_index else value.iloc[:, 0] if hasattr(value, "columns") else value
    hashes = {pandas_object_hash(v) for v in got if not isinstance(v, str)}
    raise AssertionError(
        f"the host accepted {len(got)} object values of {len(hashes)} pandas object hash(es) "
        f"({make.__name__}); value_counts/drop_duplicates/is_unique on them is quadratic on the host"
    )


def test_ordinary_object_column_still_decodes() -> None:
    value = _run(ordinary)
    assert len(value) == 2 * N + 156 and value["x"].iloc[:100].isna().all()


def test_fold_and_tuple_hashes_match_python_for_what_python_and_pandas_share() -> None:
    # the emulation's constants: with unfolded lanes pandas' tuple hash is CPython's
    assert pandas_object_hash(7) == 7 and pandas_object_hash(float("nan")) == 0
    assert len({pandas_object_hash(v) for v in same_fold(100)}) == 1
    assert len({pandas_object_hash((v,)) for v in same_fold(100)}) == 1
    h = hash((1, 2)) & (2**64 - 1)
    assert pandas_object_hash((1, 2)) == ((h >> 32) ^ h) & 0xFFFFFFFF  # lanes 1 and 2 fold to themselves
