"""Evidence metadata of an executed notebook: cell copies, sessions, environment, the seal (host side).

Who calls: ``glsandbox run`` (:func:`write_evidence_metadata` after the run)
and the pre-save hook (:func:`cell_metadata`, :func:`collect_records`,
:func:`session_heads`). Nothing here runs code from the notebook.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

from ..audit.keys import Signer, signer_from_bytes
from .evidence import OUTPUTS_FORMAT, find_audit_output, record_status, saved_outputs_evidence, source_hash
from .seal import METADATA_KEY, seal_notebook
from .shape import as_list


def environment() -> dict[str, Any]:
    """Versions of what ran the notebook (python, glsandbox, Jupyter packages, OS)."""
    from importlib import metadata as md

    from .._version import __version__

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "glsandbox": __version__,
        "os": platform.platform(),
        "machine": platform.machine(),
    }
    for dist in ("ipykernel", "jupyter_client", "nbclient", "nbformat", "ipython"):
        try:
            env[dist] = md.version(dist)
        except md.PackageNotFoundError:
            env[dist] = None
    return env


def collect_records(nb: Any) -> list[dict[str, Any]]:
    """Every audit record held by the cells' audit outputs, in notebook order."""
    records: list[dict[str, Any]] = []
    for cell in nb.cells:
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        found = find_audit_output(as_list(cell.get("outputs")))
        if found is None:
            continue
        payload = found[1]
        records.extend(dict(r) for r in as_list(payload.get("preceding")) if isinstance(r, Mapping))
        if isinstance(payload.get("record"), Mapping):
            records.append(dict(payload["record"]))
    return records


def session_heads(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per session: id, chain head (record_hash of the last record) and count (the seal signs them)."""
    last: dict[str, dict[str, Any]] = {}
    for rec in records:
        sid = str(rec.get("session_id"))
        seq = rec.get("seq")
        if not isinstance(seq, int):
            continue
        if sid not in last or seq > int(last[sid]["seq"]):
            last[sid] = rec
    sessions = []
    for sid, rec in last.items():
        sessions.append({"session_id": sid, "head": rec.get("record_hash"), "count": int(rec["seq"]) + 1})
    return sessions


def cell_metadata(cell: Any, fmt: int = OUTPUTS_FORMAT) -> dict[str, Any] | None:
    """``cell.metadata["glsandbox"]`` for a cell with an audit output (None without).

    Besides the copies of the records, a summary derived from them and the cell
    (:data:`SUMMARY_FIELDS`, outputs hashed in outputs format ``fmt``), which
    verify re-derives (:func:`summary_differences`).
    """
    found = find_audit_output(as_list(cell.get("outputs")))
    if found is None:
        return None
    payload = found[1]
    record = payload.get("record")
    if not isinstance(record, Mapping):
        return None
    extra = record.get("extra") if isinstance(record.get("extra"), Mapping) else {}
    assert isinstance(extra, Mapping)
    source = cell.get("source", "")
    outputs = [o for i, o in enumerate(as_list(cell.get("outputs"))) if i != found[0]]
    entries: list[Any] = extra.get("outputs") if isinstance(extra.get("outputs"), list) else []  # type: ignore[assignment]
    origins = [str(e.get("origin")) for e in entries if isinstance(e, Mapping)] or None
    current = saved_outputs_evidence(outputs, origins, fmt)
    return {
        "record": dict(record),
        "preceding": [dict(r) for r in as_list(payload.get("preceding")) if isinstance(r, Mapping)],
        **({"superseded": payload["superseded"]} if payload.get("superseded") else {}),
        "status": record_status(record),
        "source_hash": source_hash(source),
        "outputs_hash": current["outputs_hash"],
        "hashes_match": extra.get("source_hash") == source_hash(source)
        and extra.get("outputs_hash") == current["outputs_hash"],
    }


#: the fields of a cell's metadata copy derived from its record and the cell (not copies of records)
SUMMARY_FIELDS = ("status", "source_hash", "outputs_hash", "hashes_match")


def summary_differences(cell: Mapping[str, Any], copy: Mapping[str, Any]) -> list[str]:
    """What the summary in ``copy`` (a cell's ``metadata["glsandbox"]``) says that the cell and its
    record do not: ``["status 'ok' (its record and the cell give 'error')", ...]``; empty when it agrees.

    Re-derived as :func:`cell_metadata` writes it; the outputs hash in any outputs format
    (a copy written by an older glsandbox hashed in format 1). Who calls: ``verify_notebook``.
    """
    fresh = [f for f in (cell_metadata(cell, fmt) for fmt in range(OUTPUTS_FORMAT, 0, -1)) if f is not None]
    if not fresh:
        return []
    want = next((f for f in fresh if f["outputs_hash"] == copy.get("outputs_hash")), fresh[0])
    return [
        f"{k} {str(copy[k])[:70]!r} (its record and the cell give {str(want[k])[:70]!r})"
        for k in SUMMARY_FIELDS
        if k in copy and copy[k] != want[k]
    ]


def write_evidence_metadata(
    nb: Any,
    key: bytes | Signer | None,
    *,
    run: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fill ``cell.metadata["glsandbox"]`` and ``notebook.metadata["glsandbox"]`` and seal; returns the latter.

    Called by ``glsandbox run`` after execution (and usable on any notebook
    holding audit outputs). ``key``: HMAC secret or PEM Ed25519 private key
    bytes, or a signer. Never touches ``metadata.execution``.
    """
    from .._version import __version__

    signer = signer_from_bytes(key) if isinstance(key, (bytes, bytearray)) else key

    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        meta = cell_metadata(cell)
        if meta is not None:
            cell.metadata[METADATA_KEY] = meta
    records = collect_records(nb)
    session_start = next((r for r in records if r.get("event_type") == "session_start"), None)
    extra = session_start.get("extra") if isinstance(session_start, Mapping) else None
    nb_meta: dict[str, Any] = {
        "version": __version__,
        "sessions": session_heads(records),
        "records": len(records),
        "signed": signer is not None,
        "environment": environment(),
        "config": {
            **(config or {}),
            "backend": extra.get("backend") if isinstance(extra, Mapping) else None,
            "sandbox": extra.get("config") if isinstance(extra, Mapping) else None,
        },
    }
    if run is not None:
        nb_meta["run"] = run
    nb.metadata[METADATA_KEY] = nb_meta
    seal_notebook(nb, signer)
    return nb_meta
