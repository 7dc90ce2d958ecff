"""The restricted codec's fast path for small control frames (both sides).

A warm call's request and reply are small dicts of plain values (the
message type, an id, the function's and the arguments' pickled bytes, a
small result). :func:`encode` sends those as MessagePack, encoded and
decoded in C by ``msgpack``; everything else goes through the full codec
(:mod:`glsandbox_kernel.codec`), which :func:`encode` says by returning None.

What may travel this way, exactly (a value of any other type, a subclass,
a tuple, a set, a bytearray, a dict with a key that is not ``str``, a lone
surrogate, an int outside 64 bits, nesting deeper than :data:`MAX_DEPTH`,
more than :data:`MAX_NODES` objects or more than :data:`MAX_BYTES` encoded
bytes falls back): a ``dict`` at the top, then dict (``str`` keys), list,
str, bytes, int, float, bool, None. Each of those round-trips to its own
type, so which path a value took never shows in what the receiver gets.

Decoding (:func:`decode`, HOST side for the worker's frames) treats the
bytes as hostile: MessagePack frames are recognised by their first byte (a
map header, 0x80-0x8f, 0xde, 0xdf; the full codec's tags are ASCII), at most
:data:`MAX_BYTES` long, decoded with no extension types (``max_ext_len=0``
and a hook that refuses), ``strict_map_key``, ``raw=False`` (invalid UTF-8 is
refused), lists for arrays and every length bounded by the frame's size;
then one iterative walk checks the allowlist above (only ``str`` keys, no
nesting past :data:`MAX_DEPTH`). The frame bound is the budget: a frame of
at most 64 KiB decodes to at most 64 Ki objects of at most 64 bytes each,
below :class:`~glsandbox_kernel.codec.Budget`'s floor, in microseconds;
``str`` and ``bytes`` keys hash with the interpreter's random seed, so no
hash flood is possible. Anything else is SandboxSecurityError.

``msgpack`` is optional: without it :data:`AVAILABLE` is False, nothing is
sent this way and such frames are refused. A channel sends fast frames only
to a peer that can read them (see ``FrameChannel.fast_send``).
"""

from __future__ import annotations

import mmap
import threading
from typing import Any

from .exceptions import SandboxSecurityError

try:
    import msgpack as _msgpack
except ImportError:  # pragma: no cover - msgpack is a dependency; a worker image may lack it
    _msgpack = None

#: each thread's MessagePack packer, made once: ``packb`` built one (and its buffer) per frame,
#: half of a small frame's packing in instructions (3.4k of 6.1k in an emulated guest)
_PACKER = threading.local()
#: whether this side can encode and decode fast frames
AVAILABLE = _msgpack is not None
#: largest fast frame; larger values take the full codec
MAX_BYTES = 64 * 1024
#: deepest nesting of containers below the top-level dict
MAX_DEPTH = 32
#: most objects a value sent this way may have (the sender's scan stops there)
MAX_NODES = 4096

_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})
#: first bytes of a MessagePack map (fixmap, map16, map32): never a tag of the full codec
FIRST_BYTES = frozenset({*range(0x80, 0x90), 0xDE, 0xDF})


def encode(message: dict[str, Any]) -> bytes | None:
    """``message`` as a fast frame, or None when it must take the full codec (either side)."""
    if _msgpack is None or not _plain(message):
        return None
    try:
        packer = _PACKER.packer
    except AttributeError:
        packer = _PACKER.packer = _msgpack.Packer(use_bin_type=True, strict_types=True)
    try:
        data: bytes = packer.pack(message)  # a failed pack leaves the packer empty for the next
    except (OverflowError, UnicodeEncodeError, TypeError, ValueError):
        return None  # an int past 64 bits, a lone surrogate: the full codec carries them
    return data if len(data) <= MAX_BYTES else None


def _plain(value: dict[str, Any]) -> bool:
    """Sending side: True when ``value`` holds only the allowlisted types, within the bounds.

    The usual frame (a warm call's request or reply: a flat map of scalars)
    is checked in one loop, without :func:`_refusal`'s stack; that saves a
    tenth of the worker's frame handling in an emulated (TCG) guest. Any
    other value takes the full walk.
    """
    if type(value) is dict and len(value) <= 16:
        scalars = _SCALARS
        size = 0
        for key, item in value.items():
            t = type(item)
            if type(key) is not str or t not in scalars:
                break
            size += len(key) + (len(item) if t is str or t is bytes else 0)
        else:
            return size <= MAX_BYTES
    return _refusal(value) is None


def _refusal(value: Any) -> str | None:
    """Why ``value`` may not be a fast frame, or None (both sides: before packing, after unpacking)."""
    if type(value) is not dict:
        return "not a map"
    scalars = _SCALARS
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    size = 0  # str and bytes lengths: a large one is never packed (packb would copy it whole)
    while stack:
        container, depth = stack.pop()
        nodes += len(container)
        if nodes > MAX_NODES:
            return f"more than {MAX_NODES} objects"
        if type(container) is dict:
            for key in container:
                if type(key) is not str:
                    return "a map key that is not str"
                size += len(key)
            items = container.values()
        else:
            items = container
        for item in items:
            t = type(item)
            if t in scalars:
                if t is bytes or t is str:
                    size += len(item)
                continue
            if t is not list and t is not dict:
                return f"a {t.__name__}"
            if depth >= MAX_DEPTH:
                return "nesting too deep"
            stack.append((item, depth + 1))
    return None if size <= MAX_BYTES else f"more than {MAX_BYTES} bytes of str and bytes"


def _refuse_ext(code: int, data: bytes) -> Any:
    raise SandboxSecurityError(f"malformed value: MessagePack extension type {code} is not allowed")


def decode(data: bytes | bytearray | memoryview | mmap.mmap) -> dict[str, Any]:
    """Decode a fast frame. Host side: ``data`` is hostile; refuses with SandboxSecurityError."""
    n = len(data)
    if n > MAX_BYTES:
        raise SandboxSecurityError(f"malformed value: a MessagePack frame of {n} bytes (at most {MAX_BYTES})")
    if _msgpack is None:
        raise SandboxSecurityError("malformed value: a MessagePack frame, but msgpack is not installed here")
    try:
        value = _msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n,
            max_ext_len=0,
            ext_hook=_refuse_ext,
        )
    except SandboxSecurityError:
        raise
    except (ValueError, TypeError, OverflowError, _msgpack.UnpackException) as exc:
        raise SandboxSecurityError(f"malformed value: {type(exc).__name__}: {exc}"[:300]) from None
    _check(value)
    return value  # type: ignore[no-any-return]


def decode_trusted(data: bytes | bytearray | memoryview | mmap.mmap) -> dict[str, Any]:
    """Decode a fast frame the HOST sent (SANDBOX side: the worker reading its requests).

    The worker's view of the host is not a trust boundary (the host's checks
    of the worker's frames are, :func:`decode`), so neither the allowlist walk
    nor the per-call limits run here: MessagePack's own limits follow the
    frame's size. Under TCG that halves the decode of a warm call's request.
    Malformed data is still SandboxSecurityError.
    """
    try:
        value = _msgpack.unpackb(data)  # raw=False is msgpack's default (>= 1.0): no keyword to parse
    except (ValueError, TypeError, OverflowError, AttributeError, _msgpack.UnpackException) as exc:
        raise SandboxSecurityError(f"malformed value: {type(exc).__name__}: {exc}"[:300]) from None
    if type(value) is not dict:
        raise SandboxSecurityError("malformed value: a MessagePack frame that is not a map")
    return value


def _check(value: Any) -> None:
    """Host side: the decoded value holds only the allowlisted types, ``str`` keys, bounded nesting."""
    why = _refusal(value)
    if why is not None:
        raise SandboxSecurityError(f"malformed value: a MessagePack frame with {why}")
