"""Jupyter server extension: a pre-save hook that keeps a saved notebook's evidence whole (host side).

Who calls: the Jupyter server. ``jupyter-config/jupyter_server_config.d/glsandbox.json``
(installed to ``etc/jupyter/jupyter_server_config.d``) enables this module
as a server extension (``ServerApp.jpserver_extensions``: config files there
are read by the server, but only extensions are loaded from them);
:func:`_load_jupyter_server_extension` then registers :func:`pre_save_hook`
on the server's contents manager. It runs in the server, never in a kernel
or the sandbox, and only reads what the outputs hold.

On each save of a notebook with audit outputs it writes
``cell.metadata["glsandbox"]`` (the same second copy ``glsandbox run``
writes), records each session's chain head in
``notebook.metadata["glsandbox"]["sessions"]`` and re-seals the notebook
(:mod:`.seal`), signed when the server has a key (``$GLSANDBOX_AUDIT_KEY``:
an HMAC secret or a PEM Ed25519 private key). Without a key, a signed seal
whose notebook did not change is kept as it was (a JupyterLab Ctrl+S of a
``glsandbox run`` output stays verifiable with the run's key); a changed
notebook gets an unsigned seal. A failure here never prevents the save (the
server logs it).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

log = logging.getLogger("glsandbox.presave")


def copy_audit_records(nb: MutableMapping[str, Any], key: bytes | None = None) -> int:
    """Copy audit records into cell and notebook metadata and re-seal; returns the cells updated."""
    from ..audit.keys import signer_from_bytes
    from .metadata import cell_metadata, collect_records, session_heads
    from .seal import METADATA_KEY, copy_seal_to_cells, seal_digest, seal_notebook

    meta = nb.setdefault("metadata", {})
    before = copy.deepcopy(meta.get(METADATA_KEY)) if isinstance(meta.get(METADATA_KEY), Mapping) else None
    updated = 0
    for cell in nb.get("cells") or []:
        if not isinstance(cell, MutableMapping) or cell.get("cell_type") != "code":
            continue
        fresh = cell_metadata(cell)
        if fresh is None:
            continue
        cell.setdefault("metadata", {})[METADATA_KEY] = fresh
        updated += 1
    if not updated:
        return 0
    records = collect_records(_Cells(nb))
    nb_meta = meta.setdefault(METADATA_KEY, {})
    nb_meta["sessions"] = session_heads(records)
    nb_meta["records"] = len(records)
    signer = signer_from_bytes(key) if key else None
    old_seal = before.get("seal") if before is not None else None
    if signer is None and isinstance(old_seal, Mapping) and old_seal.get("signature"):
        from .seal import manifest

        nb_meta["manifest"] = manifest(nb)
        nb_meta["signed"] = before.get("signed", True) if before is not None else True
        if seal_digest(nb_meta) == old_seal.get("digest"):
            nb_meta["seal"] = dict(old_seal)  # unchanged since it was signed: keep the signature
            copy_seal_to_cells(nb, old_seal)
            return updated
    nb_meta["signed"] = signer is not None
    seal_notebook(nb, signer)
    return updated


class _Cells:
    """Attribute access to a plain-dict notebook's cells (what ``collect_records`` expects)."""

    def __init__(self, nb: MutableMapping[str, Any]) -> None:
        self.cells = nb.get("cells") or []


def pre_save_hook(model: MutableMapping[str, Any], path: str = "", contents_manager: Any = None, **kwargs: Any) -> None:
    """The contents manager's pre-save hook: see the module docstring."""
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


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Entry point the Jupyter server looks for in an enabled extension module."""
    return [{"module": "glsandbox_kernel.notebook.presave"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Called by the Jupyter server at start-up: register :func:`pre_save_hook` on its contents manager."""
    manager = serverapp.contents_manager
    register = getattr(manager, "register_pre_save_hook", None)
    if register is not None:
        register(pre_save_hook)
    else:  # older jupyter_server: one hook only
        manager.pre_save_hook = pre_save_hook
    serverapp.log.info("glsandbox: pre-save hook registered (audit records copied into cell metadata on save)")


__all__ = ["copy_audit_records", "pre_save_hook"]
