"""numpy and pandas values for :mod:`glsandbox_kernel.codec` (both sides).

The worker encodes (:func:`encode`): a numpy array as its dtype string,
shape and its own memory as one part (no copy); a pandas DataFrame, Series
or Index as a small header (names, dtypes, a RangeIndex as three ints)
followed by its columns, each a numpy array, a str column (the codec's
``L``/``O`` column: NUL-joined text in pieces, built at C speed without a
per-item object list) or, for anything else, a list of allowed scalars.

The host decodes (:func:`decode_numpy`, :func:`decode_pandas`) under the
codec's budget: dtypes are matched against a plain-dtype pattern (never
object, structured or sub-array specs), shapes are tuples of ints, and
large arrays become views of a frame that is the value's alone (no copy);
DataFrames are assembled without copying their columns.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from . import codec_columns as columns
from .exceptions import SandboxSecurityError, UnsupportedType
from .loaded import loaded_module

#: numpy dtype strings the host accepts (no object, no sub-array or structured specs)
_DTYPE_RE = re.compile(r"^[<>|=]?[?bBhHiIlLqQuefdgcFDGSUVmM][0-9]{0,9}(\[[A-Za-z0-9]{1,8}\])?$")

Enc = Callable[[Any, list[Any], int], None]
Dec = Callable[[Any, int], Any]
CheckHashes = Callable[..., None]


def _numpy() -> Any:
    """numpy, which decoding an array frame has imported (the import finished: see :mod:`.loaded`)."""
    return loaded_module("numpy")


# -- worker side ---------------------------------------------------------------------------------
def encode(v: Any, out: list[Any], depth: int, enc: Enc, enc_raw: Callable[..., None], large: int) -> bool:
    """Worker side: append ``v`` if it is a numpy or pandas value and return True; else False."""
    np = loaded_module("numpy")
    if np is not None:
        if isinstance(v, np.ndarray) and type(v) is np.ndarray:
            if v.dtype.hasobject:
                raise UnsupportedType("numpy.ndarray with object dtype")
            arr = np.ascontiguousarray(v)
            out.append(b"n")
            enc(arr.dtype.str, out, depth + 1)
            enc(tuple(int(x) for x in arr.shape), out, depth + 1)
            # The array's own memory as a part (no copy); small arrays are copied in.
            raw = memoryview(arr.reshape(-1).view(np.uint8)) if arr.nbytes >= large else arr.tobytes()
            enc_raw(b"b", raw, out)
            return True
        if isinstance(v, np.generic) and not isinstance(v, np.object_):
            out.append(b"g")
            enc(v.dtype.str, out, depth + 1)
            enc_raw(b"b", v.tobytes(), out)
            return True
    pd = loaded_module("pandas")
    if pd is None:
        return False
    if type(v) is pd.DataFrame:
        cols = [v.iloc[:, i] for i in range(v.shape[1])]
        _enc_frame(b"P", {"names": list(v.columns)}, cols, v.index, out, depth, enc)
        return True
    if type(v) is pd.Series:
        _enc_frame(b"R", {"name": v.name}, [v], v.index, out, depth, enc)
        return True
    if isinstance(v, pd.Index) and type(v) in (pd.Index, pd.RangeIndex):
        _enc_frame(b"X", {"name": v.name}, [], v, out, depth, enc)
        return True
    return False


def _enc_frame(
    tag: bytes, meta: dict[str, Any], cols: list[Any], index: Any, out: list[Any], depth: int, enc: Enc
) -> None:
    """``tag`` + header dict + one value per column (+ the index's values unless it is a range)."""
    import pandas as pd

    rng = type(index) is pd.RangeIndex
    meta = {
        **meta,
        "dtypes": [str(c.dtype) for c in cols],
        "index_name": index.name,
        "index_dtype": str(index.dtype),
        "range": (int(index.start), int(index.stop), int(index.step)) if rng else None,
    }
    out.append(tag)
    enc(meta, out, depth + 1)
    for col in cols:
        _enc_column(col.to_numpy(), out, depth, enc)
    if not rng:
        _enc_column(index.to_numpy(), out, depth, enc)


def _enc_column(values: Any, out: list[Any], depth: int, enc: Enc) -> None:
    """One column: a plain numpy array, a str column from an object array, or a list of scalars."""
    if not values.dtype.hasobject:
        enc(values, out, depth + 1)
    elif values.ndim != 1 or not columns.encode_seq(values, b"O", out):
        enc(values.tolist(), out, depth + 1)


# -- host side -----------------------------------------------------------------------------------
def decode_numpy(r: Any, tag: bytes, depth: int, dec: Dec, large: int, check_hashes: CheckHashes) -> Any:
    """Host side: an ``n`` (array) or ``g`` (scalar) value; hostile data, under ``r``'s budget.

    Every array goes through ``check_hashes`` (64-bit numbers of one pandas
    hash value: an array is a pandas column or index away from its table).
    """
    try:
        import numpy as np
    except ImportError:
        raise SandboxSecurityError("the sandbox returned a numpy value but numpy is not installed here") from None
    if bytes(r.take(1)) != b"s":
        raise SandboxSecurityError("malformed numpy value")
    dtype_str = r.text()
    if not _DTYPE_RE.match(dtype_str):
        raise SandboxSecurityError(f"numpy dtype {dtype_str[:40]!r} refused (object dtype or not a plain dtype)")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise SandboxSecurityError(f"malformed numpy dtype {dtype_str!r}") from exc
    if dtype.hasobject:
        raise SandboxSecurityError("numpy object dtype refused")
    shape: Any = None
    if tag == b"n":
        shape = dec(r, depth + 1)
        if type(shape) is not tuple or not all(type(x) is int and x >= 0 for x in shape):
            raise SandboxSecurityError("malformed numpy shape")
    if bytes(r.take(1)) != b"b":
        raise SandboxSecurityError("malformed numpy value")
    n = r.u32()
    view = r.views and tag == b"n" and n >= large
    r.charge(112 + (0 if view else 2 * n))
    raw = r.take(n)
    try:
        if tag == b"g":
            return np.frombuffer(bytes(raw), dtype=dtype)[0]
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    except (ValueError, IndexError) as exc:
        raise SandboxSecurityError(f"malformed numpy data: {exc}") from exc
    check_hashes(arr, "number")
    return arr if view else arr.copy()  # a view: the frame's own memory, writable, kept alive by the array


def decode_pandas(r: Any, tag: bytes, depth: int, dec: Dec, check_hashes: CheckHashes) -> Any:
    """Host side: a DataFrame (``P``), Series (``R``) or Index (``X``); hostile data, under ``r``'s budget.

    Labels pandas hashes (an index's values as a list, column names) go
    through ``check_hashes`` before pandas sees them: see :func:`_check_labels`;
    so do object columns (a list: ints past 64 bits, mixed objects, tuples),
    by pandas' object hash, which ``value_counts``/``set_index``... use.
    """
    try:
        import pandas as pd
    except ImportError:
        raise SandboxSecurityError("the sandbox returned a pandas value but pandas is not installed here") from None
    meta = dec(r, depth + 1)
    if type(meta) is not dict or type(meta.get("dtypes")) is not list:
        raise SandboxSecurityError("malformed pandas value")
    dtypes = meta["dtypes"]
    want = {b"P": None, b"R": 1, b"X": 0}[tag]
    if (want is not None and len(dtypes) != want) or not all(type(d) is str for d in dtypes):
        raise SandboxSecurityError("malformed pandas value: column count")
    try:
        raw = [dec(r, depth + 1) for _ in dtypes]
        rng = meta.get("range")
        np = _numpy()
        names = meta.get("names")
        if type(names) is list:
            _check_labels(names, "column name", check_hashes)
        if rng is None:
            labels = dec(r, depth + 1)  # an array: checked as it decoded
            if type(labels) is list:
                _check_labels(labels, "index label", check_hashes)
            values = _host_array(pd, labels, str(meta.get("index_dtype")), None)
            index = pd.Index(values, name=meta["index_name"])
            if type(labels) is list and not isinstance(index, pd.MultiIndex) and index.dtype != object:
                check_hashes(index.to_numpy(), "index label")  # pandas made numbers of the list: their hash
        elif type(rng) is tuple and len(rng) == 3 and all(type(x) is int for x in rng):
            index = pd.RangeIndex(*rng, name=meta["index_name"])
        else:
            raise SandboxSecurityError("malformed pandas index")
        rows = len(index)
        for c in raw:  # a scalar here would be broadcast to every row: a tiny frame, a huge host allocation
            if not (type(c) is list or (type(c) is np.ndarray and c.ndim == 1)) or len(c) != rows:
                raise SandboxSecurityError("malformed pandas value: a column is not one value per row")
        for c in raw:  # an object column: pandas hashes it by its object hash on value_counts, set_index...
            if type(c) is list:
                check_hashes(c, "object column value", unhashable_ok=True, pandas=True)
        cols = [_host_array(pd, c, d, index) for c, d in zip(raw, dtypes, strict=True)]
        if tag == b"X":
            return index
        if tag == b"R":
            return pd.Series(cols[0], index=index, name=meta["name"], copy=False)
        names = meta["names"]
        if type(names) is not list or len(names) != len(cols):
            raise SandboxSecurityError("malformed pandas DataFrame")
        frame = pd.DataFrame(dict(enumerate(cols)), index=index, copy=False)
        if names:
            frame.columns = pd.Index(names)
        return frame
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise SandboxSecurityError(f"malformed pandas value: {exc}") from exc


def _check_labels(labels: list[Any], what: str, check_hashes: CheckHashes) -> None:
    """Host side: refuse a hash flood in labels pandas will hash, before it builds anything.

    ``pd.Index`` of a list factorizes it in pandas' object hash table (which
    uses Python's hash): tuples make a MultiIndex whose every level is
    factorized, other objects an Index hashed by ``is_unique``/``.loc``.
    Python's int hash is the value modulo ``2**61 - 1``, no secret, so a
    worker builds any number of distinct ints (and tuples, whose hash
    derives from their members') with one hash value. The labels and each
    level's values are checked as a set's members are, and by pandas' object
    hash (:func:`.codec_hashes.pandas_object_hash`; unhashable labels are
    skipped). Linear in the labels' members.
    """
    check_hashes(labels, what, unhashable_ok=True)
    check_hashes(labels, what, unhashable_ok=True, pandas=True)  # an object index: pandas' own hash
    levels: list[Any] = []
    widths = set(map(len, labels)) if set(map(type, labels)) == {tuple} else None
    if widths is not None and len(widths) == 1:  # a MultiIndex's tuples: its levels at C speed
        levels = [list(map(operator.itemgetter(i), labels)) for i in range(widths.pop())]
    else:
        for label in labels:
            if type(label) is tuple:
                while len(levels) < len(label):
                    levels.append([])
                for level, member in zip(levels, label, strict=False):
                    level.append(member)
    for i, level in enumerate(levels):
        check_hashes(level, f"{what} (level {i})", unhashable_ok=True, pandas=True)


def _host_array(pd: Any, values: Any, dtype: str, index: Any) -> Any:
    """A decoded column as pandas will keep it: a str column as a StringArray over its own
    object array (no copy), an object column as a Series of objects on ``index`` (pandas
    would infer strs), numbers as they came."""
    np = _numpy()
    if type(values) is np.ndarray and values.dtype.hasobject:
        if dtype == "str":
            try:
                return pd.arrays.StringArray(values, dtype=pd.StringDtype("python", na_value=np.nan))
            except (TypeError, ValueError, AttributeError):
                return values
    if dtype == "object":
        if index is None:  # an index: a list of tuples becomes a MultiIndex, as it was
            return values if type(values) is list else pd.Index(values, dtype=object)
        return pd.Series(values, index=index, dtype=object, copy=False)
    return values
