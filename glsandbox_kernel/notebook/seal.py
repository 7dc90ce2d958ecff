"""The notebook seal: one signed digest over the whole notebook's structure (host side).

Who calls: ``glsandbox run`` and the pre-save hook (:func:`seal_notebook`),
the verifier (:func:`check_seal`). Cell records cover what each executed
cell ran and showed; the seal covers what no cell record can: every cell's
type and source (markdown and raw cells included, and a raw cell's
``raw_mimetype``: nbconvert's HTML export inserts a raw cell whose format is
``text/html`` as HTML), the cell count and order,
each code cell's record and outputs, the kernelspec and language info, and
the rest of ``notebook.metadata["glsandbox"]`` (sessions and their heads,
configuration, environment, how the run went).

``notebook.metadata["glsandbox"]["manifest"]`` holds the per-cell hashes (so
the verifier can name what changed), ``...["seal"]`` the digest — SHA-256 of
the RFC 8785 form of ``notebook.metadata["glsandbox"]`` without ``seal`` —
and its signature. Every code cell with evidence keeps a copy of the seal in
``cell.metadata["glsandbox"]["seal"]``, so deleting the last cells together
with the notebook-level metadata is still seen.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping, MutableMapping
from typing import Any

from ..audit.keys import Signer, Verifier, signature_mismatch, unchecked_signature_note
from ..audit.records import canonical_json
from ..terminal_text import printable
from .evidence import canonical_outputs, find_audit_output, source_hash
from .shape import as_list, as_map

METADATA_KEY = "glsandbox"
#: 3: raw cells' raw_mimetype; 4: outputs hashed in outputs format 2 (:data:`.evidence.OUTPUTS_FORMAT`:
#: base64 loses only ASCII whitespace, big JSON ints exact). A format-2 or 3 seal is checked as it was made.
SEAL_FORMAT = 4


def _digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def cell_source(cell: Mapping[str, Any]) -> str:
    """A cell's source as text; a damaged one (not text, or a list holding non-text) never raises
    (verify names it: :func:`.checks.malformed_cells`)."""
    src = cell.get("source", "")
    if isinstance(src, str):
        return src
    return "".join(str(s) for s in src) if isinstance(src, list) else str(src)


def manifest(nb: Mapping[str, Any], fmt: Any = SEAL_FORMAT) -> dict[str, Any]:
    """Per-cell hashes, kernelspec and language info of ``nb`` (what the seal covers besides the metadata).

    ``fmt``: the seal format to compute (that of a stored manifest, to check it; a format the
    signed digest covers, so it cannot be lowered afterwards).
    """
    fmt = fmt if fmt in (2, 3) and not isinstance(fmt, bool) else SEAL_FORMAT
    outputs_fmt = 2 if fmt >= 4 else 1
    cells: list[dict[str, Any]] = []
    for cell in nb.get("cells") or []:
        if not isinstance(cell, Mapping):
            cells.append({"type": "?"})
            continue
        entry: dict[str, Any] = {"type": str(cell.get("cell_type")), "source": source_hash(cell_source(cell))}
        if cell.get("cell_type") == "code":
            outputs = as_list(cell.get("outputs"))
            found = find_audit_output(outputs)
            record = found[1].get("record") if found else None
            entry["record"] = record.get("record_hash") if isinstance(record, Mapping) else None
            entry["outputs"] = _digest(canonical_outputs(outputs if isinstance(outputs, list) else [], outputs_fmt))
        if cell.get("attachments"):
            entry["attachments"] = _digest(cell.get("attachments"))
        if fmt >= 3 and cell.get("cell_type") == "raw":
            cell_meta = cell.get("metadata")
            entry["format"] = cell_meta.get("raw_mimetype") if isinstance(cell_meta, Mapping) else None
        cells.append(entry)
    meta = nb.get("metadata") or {}
    return {
        "format": fmt,
        "cells": cells,
        "kernelspec": meta.get("kernelspec"),
        "language_info": meta.get("language_info"),
    }


def seal_digest(nb_meta: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``notebook.metadata["glsandbox"]`` without its seal."""
    return _digest({k: v for k, v in nb_meta.items() if k != "seal"})


def seal_notebook(nb: MutableMapping[str, Any], signer: Signer | None) -> dict[str, Any]:
    """Write the manifest and the seal (signed with ``signer``) into ``nb``; returns the seal."""
    meta = nb.setdefault("metadata", {})
    nb_meta = meta.setdefault(METADATA_KEY, {})
    nb_meta["manifest"] = manifest(nb)
    nb_meta.pop("seal", None)
    digest = seal_digest(nb_meta)
    seal: dict[str, Any] = {"digest": digest}
    if signer is not None:
        seal["scheme"] = signer.scheme
        seal["signature"] = signer.sign(digest.encode("ascii"))
    nb_meta["seal"] = seal
    copy_seal_to_cells(nb, seal)
    return seal


def copy_seal_to_cells(nb: Mapping[str, Any], seal: Mapping[str, Any]) -> None:
    """Put a copy of ``seal`` into every code cell that carries evidence metadata."""
    for cell in nb.get("cells") or []:
        if not isinstance(cell, MutableMapping) or cell.get("cell_type") != "code":
            continue
        cell_meta = as_map(cell.get("metadata")).get(METADATA_KEY)
        if isinstance(cell_meta, MutableMapping):
            cell_meta["seal"] = dict(seal)


def _cell_label(index: int, cell: Any) -> str:
    count = cell.get("execution_count") if isinstance(cell, Mapping) else None
    return f"cell {index + 1} ({f'In [{count}]' if isinstance(count, int) else 'not executed'})"


def _changed_keys(was: Any, now: Any) -> str:
    """``"display_name 'A' -> 'B'; version removed"``: the keys of a sealed mapping that changed."""
    if not isinstance(was, Mapping) or not isinstance(now, Mapping):
        return f"was {str(was)[:80]!r}, now {str(now)[:80]!r}"
    parts = []
    for key in sorted({*was, *now}, key=str):
        if key not in now:
            parts.append(f"{key} removed")
        elif key not in was:
            parts.append(f"{key} added: {str(now[key])[:80]!r}")
        elif canonical_json(was[key]) != canonical_json(now[key]):
            parts.append(f"{key} {str(was[key])[:80]!r} -> {str(now[key])[:80]!r}")
    return "; ".join(parts[:8]) or "its form"


def _describe(old: Mapping[str, Any], new: Mapping[str, Any], cells: list[Any]) -> list[str]:
    """What differs between the sealed manifest and the notebook now, in words."""
    out: list[str] = []
    for field in ("kernelspec", "language_info"):
        if canonical_json(old.get(field)) != canonical_json(new.get(field)):
            out.append(
                f"the {field} changed after the notebook was sealed ({_changed_keys(old.get(field), new.get(field))})"
            )
    sealed = [c for c in old.get("cells") or [] if isinstance(c, Mapping)]
    current = list(new.get("cells") or [])
    if len(sealed) != len(current):
        out.append(
            f"the notebook had {len(sealed)} cell(s) when it was sealed and has {len(current)} now "
            f"({'cells inserted' if len(current) > len(sealed) else 'cells deleted'})"
        )
    for index, (was, now) in enumerate(zip(sealed, current, strict=False)):
        if canonical_json(was) == canonical_json(now):
            continue
        label = _cell_label(index, cells[index] if index < len(cells) else {})
        what = [k for k in ("type", "source", "record", "outputs", "attachments") if was.get(k) != now.get(k)]
        if was.get("format") != now.get("format"):
            what.append(f"raw format (was {was.get('format')!r}, now {now.get('format')!r})")
        out.append(f"{label}: {', '.join(what)} changed after the notebook was sealed")
        if len(sealed) != len(current):
            break  # past an insertion or deletion every cell differs
    return out


def check_seal(nb: Mapping[str, Any], verifier: Verifier | None) -> tuple[list[str], list[str], bool]:
    """``(problems, notes, sealed)``: the notebook seal checked against the notebook (host side)."""
    problems: list[str] = []
    notes: list[str] = []
    meta = nb.get("metadata") or {}
    nb_meta = meta.get(METADATA_KEY) if isinstance(meta, Mapping) else None
    cells = list(nb.get("cells") or [])
    copies = []
    for index, cell in enumerate(cells):
        cell_meta = as_map(cell.get("metadata")).get(METADATA_KEY) if isinstance(cell, Mapping) else None
        if isinstance(cell_meta, Mapping) and isinstance(cell_meta.get("seal"), Mapping):
            copies.append((index, cell_meta["seal"]))
    seal = nb_meta.get("seal") if isinstance(nb_meta, Mapping) else None
    if not isinstance(seal, Mapping):
        if copies:
            problems.append(
                "the notebook-level glsandbox metadata (with its seal) was removed, but "
                f"{len(copies)} cell(s) still carry the seal of the sealed notebook: cells or metadata were deleted"
            )
            return problems, notes, True
        notes.append(
            "no notebook seal (the notebook was not written by 'glsandbox run' or saved through the pre-save "
            "hook): markdown and raw cells, unexecuted cells, the cell order outside the records, the "
            "kernelspec and language info are NOT covered; only the executed cells' records are"
        )
        return problems, notes, False
    assert isinstance(nb_meta, Mapping)
    digest = seal_digest(nb_meta)
    if digest != seal.get("digest"):
        problems.append("the notebook-level glsandbox metadata was edited after it was sealed (digest differs)")
    signature = seal.get("signature")
    if verifier is not None:
        if signature is None:
            problems.append("the notebook seal is not signed (a key was given)")
        elif not verifier.verify(str(seal.get("digest")).encode("ascii", "replace"), signature):
            problems.append(f"the notebook seal is {signature_mismatch(verifier, signature)}")
    elif signature is not None:
        notes.append(unchecked_signature_note("the notebook seal is", signature))
    else:
        notes.append("the notebook seal is not signed: it shows accidental changes, not deliberate ones")
    notes.append(sealed_by_note(nb_meta))
    stored = nb_meta.get("manifest")
    if isinstance(stored, Mapping):
        problems.extend(_describe(stored, manifest(nb, stored.get("format")), cells))
    else:
        problems.append("the notebook seal has no manifest")
    for index, copy in copies:
        if copy.get("digest") != seal.get("digest"):
            problems.append(
                f"{_cell_label(index, cells[index])}: carries the seal of another notebook or run "
                "(pasted from elsewhere, or the notebook metadata was replaced)"
            )
    return problems, notes, True


def sealed_by_note(nb_meta: Mapping[str, Any]) -> str:
    """Who made the seal and when (``sealed_by``, written by the server's pre-save hook; else the
    ``run`` of ``glsandbox run``): what the seal's markdown, raw cells and cell order are fixed to."""
    by = nb_meta.get("sealed_by")
    run = nb_meta.get("run")
    if isinstance(by, Mapping):
        return (
            f"sealed by the {printable(str(by.get('by'))[:80])} at {printable(str(by.get('at'))[:40])}: markdown, "
            "raw cells and the cell order are what the frontend sent at that save, not fixed by a run"
        )
    if isinstance(run, Mapping):
        finished = run.get("finished")
        when = (
            datetime.datetime.fromtimestamp(finished, datetime.timezone.utc).isoformat(timespec="seconds")
            if isinstance(finished, (int, float)) and not isinstance(finished, bool) and 0 <= finished < 2**33
            else "?"
        )
        return f"sealed by 'glsandbox run' at {when}: markdown, raw cells and the cell order are those it ran"
    return "the seal names no maker (neither 'glsandbox run' nor the server's pre-save hook wrote it)"


__all__ = [
    "METADATA_KEY",
    "check_seal",
    "copy_seal_to_cells",
    "manifest",
    "seal_digest",
    "seal_notebook",
    "sealed_by_note",
]
