"""Outside review (3rd): a 136-byte pandas frame from the worker makes the host allocate hundreds of MiB.

Attack: a hostile worker (sandboxed code can replace its own encoder)
sends a pandas Series (``R``) or DataFrame (``P``) whose header names a
``RangeIndex`` of 20 million rows and whose column is one scalar instead of
an array. ``codec_arrays.decode_pandas`` passes the scalar to
``pd.Series(values, index=index, ...)`` / ``pd.DataFrame``, which broadcasts
it to every row. The decode budget (12x the frame + 8 MiB) is charged for
the 136 bytes only. Measured: +150 MiB (Series, object column) from 136
bytes; 10**10 rows would ask the host for 80 GB.

Judged from the host: decoding the frame either refuses it or grows the host
by no more than the budget allows.

Fix (suggested): ``codec_arrays.py`` (``decode_pandas``/``_host_array``):
every column must be an array (or list) whose length equals the index's,
checked before pandas sees it; charge the index length to the budget.
"""

from __future__ import annotations

import gc

import pytest

from glsandbox_kernel import codec
from glsandbox_kernel.exceptions import SandboxSecurityError

from .test_outside2_output_budget import _rss

pd = pytest.importorskip("pandas")

ROWS = 20_000_000


def _frame(tag: bytes, dtype: str) -> bytes:
    meta = {"dtypes": [dtype], "range": (0, ROWS, 1), "index_name": None, "index_dtype": "int64"}
    meta.update({"names": ["x"]} if tag == b"P" else {"name": None})
    return tag + codec.encode(meta) + codec.encode(7)


@pytest.mark.parametrize(("tag", "dtype"), [(b"R", "object"), (b"R", "int64"), (b"P", "object")])
def test_a_tiny_pandas_frame_cannot_allocate_past_the_decode_budget(tag: bytes, dtype: str) -> None:
    frame = _frame(tag, dtype)
    budget = codec.DEFAULT_BUDGET.ratio * len(frame) + codec.DEFAULT_BUDGET.floor
    gc.collect()
    before = _rss()
    try:
        value = codec.decode(frame)
    except SandboxSecurityError:
        return  # refused: the fix
    grown = _rss() - before
    rows = len(value)
    del value
    assert grown <= budget, (
        f"a {len(frame)}-byte {tag.decode()} frame decoded to {rows} rows and grew the host by {grown >> 20} MiB "
        f"(budget {budget >> 20} MiB)"
    )
