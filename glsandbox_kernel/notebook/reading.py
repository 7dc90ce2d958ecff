"""Read a notebook file for verification, naming what its bytes hide (host side, verifier).

Who calls: ``glsandbox audit verify``, ``attest``, ``report`` and ``glsandbox run`` through
:func:`read_notebook`; :func:`~glsandbox_kernel.notebook.verify.verify_notebook` reports the
findings it attaches (:class:`ReadNotebook`). Plain JSON (no nbformat schema imports) with three
things a plain ``json.load`` gets wrong for an auditor:

- a UTF-8 byte-order mark: no Jupyter tool writes one (``json`` and nbformat refuse the file); the
  JSON after it is read and verified, and the mark is a warning (``--strict``: a problem);
- duplicate keys in an object (a hand edit): JSON readers disagree on which one counts (Python and
  Jupyter keep the last, others the first), so a viewer could show what verify never checked: a
  problem naming each path;
- an integer too long for Python's int conversion (more than 4300 digits): no honest record holds
  one (the kernel replaces ints beyond a double); it is read as ``"<int of N digits>"`` so that a
  covered one shows as edited, and named as a warning (``--strict``: a problem).
"""

from __future__ import annotations

import json
from typing import Any

_BOM = b"\xef\xbb\xbf"
_MAX_DIGITS = 4300  # CPython's default int_max_str_digits


class ReadNotebook(dict[str, Any]):
    """A notebook's JSON plus what reading its file found (``problems``, ``warnings``)."""

    problems: list[str]
    warnings: list[str]


def _paths_of(data: Any, wanted: dict[int, list[str]]) -> list[str]:
    """``path.key`` of every duplicated key, the objects found by identity (iterative: any depth)."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack and len(found) < 20:
        path, value = stack.pop()
        if isinstance(value, dict):
            found.extend(f"{path}.{key}".lstrip(".") for key in wanted.get(id(value), []))
            stack.extend((f"{path}.{k}", v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return found


def read_notebook(path: str) -> dict[str, Any]:
    """The notebook at ``path`` as plain nbformat-4 JSON (older formats through nbformat).

    ``ValueError`` when the file is not a notebook; findings in :class:`ReadNotebook`.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    bom = raw.startswith(_BOM)
    try:
        text = raw[len(_BOM) if bom else 0 :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start}: {exc.reason}); a notebook is UTF-8 JSON") from None
    dups: dict[int, list[str]] = {}
    huge: list[int] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                dups.setdefault(id(obj), []).append(key)
            obj[key] = value
        return obj

    def parse_int(digits: str) -> int | str:
        if len(digits.lstrip("-")) <= _MAX_DIGITS:
            return int(digits)
        huge.append(len(digits.lstrip("-")))
        return f"<int of {huge[-1]} digits>"

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg}, line {exc.lineno})") from exc
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells", []), list):
        raise ValueError("not an nbformat notebook")
    if data.get("nbformat") != 4:
        import nbformat

        try:
            data = dict(nbformat.convert(nbformat.from_dict(data), 4))
        except Exception as exc:
            raise ValueError(f"cannot read nbformat {data.get('nbformat')}: {exc}") from exc
    out = ReadNotebook(data)
    out.problems = [
        f"the notebook file holds the key {where!r} twice (a hand edit: no Jupyter tool writes duplicate keys); "
        "JSON readers disagree on which one counts (Python and Jupyter keep the last, others the first), so a "
        "viewer may show content verify did not check: it checked the last"
        for where in (_paths_of(data, dups) if dups else [])
    ]
    out.warnings = []
    if bom:
        out.warnings.append(
            "the notebook file begins with a UTF-8 byte-order mark, which no Jupyter tool writes (Jupyter refuses "
            "such a file): it was re-encoded after it was written; verified is the JSON after the mark"
        )
    if huge:
        out.warnings.append(
            f"the notebook file holds {len(huge)} integer(s) of more than {_MAX_DIGITS} digits ({max(huge)}), "
            "which no glsandbox record or output holds (the kernel replaces ints beyond a double): read as "
            "'<int of N digits>', so a covered one shows as edited"
        )
    return out


__all__ = ["ReadNotebook", "read_notebook"]
