"""Jupyter server pre-save hook: audit records of outputs copied into cell metadata (host side).

Who calls: the Jupyter server's contents manager, before it writes a
notebook, when ``jupyter-config/jupyter_server_config.d/glsandbox.json``
(installed to ``etc/jupyter/jupyter_server_config.d``) sets
``FileContentsManager.pre_save_hook`` to
``glsandbox_kernel.notebook.presave.pre_save_hook``. It runs in the server,
never in a kernel or the sandbox, and only reads what the outputs hold.

For each code cell with an audit output it writes ``cell.metadata["glsandbox"]``
(the same second copy ``glsandbox run`` writes), so that a notebook run
interactively carries its records even if a frontend or tool later drops an
output; and it records each session's chain head in
``notebook.metadata["glsandbox"]["sessions"]`` (signed when the server has
``$GLSANDBOX_AUDIT_KEY``). A cell without an audit output keeps the copy it
had: the verifier then reports the output as removed. A failure here never
prevents the save (the server logs it).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

log = logging.getLogger("glsandbox.presave")


def copy_audit_records(nb: MutableMapping[str, Any], key: bytes | None = None) -> int:
    """Copy audit records from outputs into cell (and notebook) metadata; returns cells updated."""
    from .metadata import cell_metadata, collect_records, session_heads
    from .seal import METADATA_KEY

    updated = 0
    for cell in nb.get("cells") or []:
        if not isinstance(cell, MutableMapping) or cell.get("cell_type") != "code":
            continue
        meta = cell_metadata(cell)
        if meta is None:
            continue
        cell.setdefault("metadata", {})[METADATA_KEY] = meta
        updated += 1
    if updated:
        records = collect_records(_Cells(nb))
        nb_meta = nb.setdefault("metadata", {}).setdefault(METADATA_KEY, {})
        nb_meta["sessions"] = session_heads(records)
        nb_meta["records"] = len(records)
        nb_meta["signed"] = key is not None
    return updated


class _Cells:
    """Attribute access to a plain-dict notebook's cells (what ``collect_records`` expects)."""

    def __init__(self, nb: MutableMapping[str, Any]) -> None:
        self.cells = nb.get("cells") or []


def pre_save_hook(model: MutableMapping[str, Any], path: str = "", contents_manager: Any = None, **kwargs: Any) -> None:
    """``FileContentsManager.pre_save_hook``: see the module docstring."""
    if model.get("type") != "notebook":
        return
    content = model.get("content")
    if not isinstance(content, MutableMapping):
        return
    from ..audit.log import load_key

    try:
        key = load_key()
    except (OSError, ValueError):
        key = None
    updated = copy_audit_records(content, key)
    if updated:
        log.debug("glsandbox: copied audit records of %d cell(s) into the metadata of %s", updated, path)


__all__ = ["copy_audit_records", "pre_save_hook"]
