"""Fields of a notebook whose JSON type is not nbformat's (host side, verifier).

Who calls: :func:`.checks.malformed_cells` (``verify_notebook``) for the problems; the verifier's
readers use :func:`as_list` / :func:`as_map` so a container of the wrong type never raises. Every
field is read from the notebook, so anyone can change its type: a hash over a normalised form
(a stream ``name`` other than ``stderr`` hashed as stdout, an output ``metadata`` that is no object
hashed as ``{}``) or a copy that is skipped when it is no object would otherwise pass such an edit
unnamed. Each finding names the cell and the field's path and type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..audit.keys import signature_scheme
from .evidence import AUDIT_MIME

_STREAMS = ("stdout", "stderr")


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a list, else ``[]`` (its wrong type is named by :func:`shape_problems`)."""
    return value if isinstance(value, list) else []


def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is an object, else ``{}`` (its wrong type is named by :func:`shape_problems`)."""
    return value if isinstance(value, Mapping) else {}


def _kind(value: Any) -> str:
    return type(value).__name__


def _payload(where: str, payload: Any) -> list[str]:
    """A ``{"record", "preceding", "superseded", "seal"}`` copy (audit output or cell metadata)."""
    if not isinstance(payload, Mapping):
        return [f"{where} is a {_kind(payload)}, not an object"]
    out = [
        f"{where}.{key} is a {_kind(payload[key])}, not an object"
        for key in ("record", "seal")
        if key in payload and not isinstance(payload[key], Mapping)
    ]
    out += [
        f"{where}.{key} is a {_kind(payload[key])}, not a list"
        for key in ("preceding", "superseded")
        if key in payload and not isinstance(payload[key], list)
    ]
    return out


def _output(where: str, output: Mapping[str, Any]) -> list[str]:
    kind = output.get("output_type")
    out: list[str] = []
    if kind == "stream":
        if output.get("name") not in _STREAMS:
            out.append(f"{where} has stream name {output.get('name')!r:.40}, not 'stdout' or 'stderr'")
        text = output.get("text")
        if not isinstance(text, str) and not (isinstance(text, list) and all(isinstance(t, str) for t in text)):
            out.append(f"{where}.text is a {_kind(text)}, not text")
    elif kind in ("display_data", "execute_result"):
        for key in ("data", "metadata"):
            if key in output and not isinstance(output[key], Mapping):
                out.append(f"{where}.{key} is a {_kind(output[key])}, not an object")
        data = output.get("data")
        if isinstance(data, Mapping) and AUDIT_MIME in data:
            out += _payload(f"{where}.data[{AUDIT_MIME}]", data[AUDIT_MIME])
    elif kind == "error":
        tb = output.get("traceback")
        if not isinstance(tb, list) or not all(isinstance(t, str) for t in tb):
            out.append(f"{where}.traceback is a {_kind(tb)}, not a list of text")
        out += [
            f"{where}.{k} is a {_kind(output.get(k))}, not text"
            for k in ("ename", "evalue")
            if not isinstance(output.get(k), str)
        ]
    else:
        out.append(f"{where} has output_type {kind!r:.40}, which no frontend renders")
    return out


def _notebook_meta(nb: Mapping[str, Any]) -> list[str]:
    meta = nb.get("metadata", {})
    if not isinstance(meta, Mapping):
        return [f"the notebook's metadata is a {_kind(meta)}, not an object"]
    gl = meta.get("glsandbox", {})
    if not isinstance(gl, Mapping):
        return [f"the notebook's metadata.glsandbox is a {_kind(gl)}, not an object"]
    out = [
        f"the notebook's metadata.glsandbox.{key} is a {_kind(gl[key])}, not an object"
        for key in ("seal", "manifest", "run", "config", "environment", "sealed_by")
        if key in gl and not isinstance(gl[key], Mapping)
    ]
    if "sessions" in gl and not isinstance(gl["sessions"], list):
        out.append(f"the notebook's metadata.glsandbox.sessions is a {_kind(gl['sessions'])}, not a list")
    seal = gl.get("seal")
    if isinstance(seal, Mapping) and "scheme" in seal:
        signature = seal.get("signature")
        signed_as = "none" if signature is None else signature_scheme(signature).split(":", 1)[0]
        if str(seal.get("scheme")) != signed_as:
            out.append(
                f"the notebook seal's scheme {seal.get('scheme')!r:.40} is not that of its signature "
                f"({signed_as}): the seal was edited"
            )
    return out


def shape_problems(nb: Mapping[str, Any]) -> list[str]:
    """Every covered or evidence field of ``nb`` whose JSON type is not nbformat's or glsandbox's."""
    problems = _notebook_meta(nb)
    for index, cell in enumerate(as_list(nb.get("cells"))):
        if not isinstance(cell, Mapping):
            continue  # named by malformed_cells
        label = f"cell {index + 1}"
        meta = cell.get("metadata", {})
        if not isinstance(meta, Mapping):
            problems.append(f"{label}: its metadata is a {_kind(meta)}, not an object (a hand edit)")
        elif "glsandbox" in meta:
            problems += [f"{label}: its {p} (a hand edit)" for p in _payload("metadata.glsandbox", meta["glsandbox"])]
        if cell.get("cell_type") != "code":
            continue
        for n, output in enumerate(as_list(cell.get("outputs"))):
            if isinstance(output, Mapping):
                problems += [f"{label}: its {p} (a hand edit)" for p in _output(f"outputs[{n}]", output)]
        if len(problems) > 40:
            break
    return problems


__all__ = ["as_list", "as_map", "shape_problems"]
