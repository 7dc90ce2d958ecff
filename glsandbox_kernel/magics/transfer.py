"""``%%sandbox --in/--out``: what crosses between the host namespace and the sandbox (host side).

The host alone decides which names are read and written: ``--in`` sends
exactly the named values, each encoded by the restricted codec (data only);
``--out`` writes exactly the names asked for, from a reply that is hostile
input. Who calls: :mod:`glsandbox_kernel.magics.magic`.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from ..exceptions import SandboxSecurityError
from ..terminal_text import printable


def encode_in(names: list[str], user_ns: dict[str, Any]) -> dict[str, bytes]:
    """``--in``: each named host value encoded by the restricted codec (host side).

    Only data goes in: a function or an object of a host class would carry
    host state the user did not name (cloudpickle sends a function's globals).
    """
    from ..codec import UnsupportedType, encode

    encoded: dict[str, bytes] = {}
    for name in names:
        if name not in user_ns:
            raise UsageError(f"--in: name {name!r} is not defined here")
        try:
            encoded[name] = encode(user_ns[name])
        except UnsupportedType as exc:
            raise UsageError(
                f"--in {name}: a value of type {exc.typename} cannot be copied into the sandbox; only data "
                "goes in (builtins, datetime, Decimal, Fraction, numpy, pandas), never code or host objects"
            ) from None
    return encoded


def accept_out(names: list[str], values: Any) -> dict[str, Any]:
    """``--out``: the values of exactly ``names`` from the sandbox's reply, or SandboxSecurityError.

    Host side: the reply is hostile. Its keys decide nothing; a reply with a
    name that was not asked for (or without one that was) is refused whole,
    and so is one that makes the check itself fail (tampering too, never a host bug).
    """
    try:
        return _accept_out(names, values)
    except SandboxSecurityError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the reply made fail, it is refused as tampering
        raise SandboxSecurityError(
            f"--out: the sandbox's reply could not be checked ({type(exc).__name__}); nothing was copied to this kernel"
        ) from None


def _accept_out(names: list[str], values: Any) -> dict[str, Any]:
    if type(values) is not dict:
        raise SandboxSecurityError(
            f"--out: the sandbox answered with a {type(values).__name__}, not the values asked for; nothing was copied"
        )
    asked = set(names)
    extra = sorted(key_name(k) for k in values if type(k) is not str or k not in asked)
    missing = [n for n in names if n not in values]
    if extra or missing:
        what = []
        if extra:
            what.append("names not asked for: " + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
        if missing:
            what.append("names missing: " + ", ".join(missing))
        raise SandboxSecurityError(
            f"--out: the sandbox's reply was tampered with ({'; '.join(what)}); nothing was copied to this kernel"
        )
    return {name: values[name] for name in names}


def key_name(key: Any) -> str:
    """A reply key named for an error message: bounded, printable, and built without calling the key.

    ``repr`` of an int over 4300 digits raises (Python's int string limit), and
    a str key may hold terminal controls: a str is cut then escaped, anything
    else is named by its type (and its size, for an int).
    """
    if type(key) is str:
        return printable(repr(key[:80]))
    if type(key) is int:
        return f"<int of {key.bit_length()} bits>" if key.bit_length() > 64 else str(key)
    return f"<{type(key).__name__}>"
