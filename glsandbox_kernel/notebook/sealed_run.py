"""The signed chain commits to the notebook seal of a ``glsandbox run`` (host side).

The seal (:mod:`.seal`) lives in ``notebook.metadata["glsandbox"]`` and in a
copy per cell's metadata: a tamperer who strips all of them, then deletes,
moves or edits cells, would leave only signed cell records that say nothing of
the cells around them, and the notebook would pass as an unsealed one. So
``glsandbox run`` tells the kernel it starts (:func:`mark_kernel_env`, an
environment variable the sandbox never sees: its environment is an allowlist)
that the notebook will be sealed, and the kernel's session records that in
its first, signed record (``extra.sealed_run``, :func:`session_start_extra`).
The verifier (:func:`seal_problems`) then fails a notebook whose records say
it was sealed but whose seal is gone, and one whose glsandbox-kernel records
stand in a notebook that names another kernel.

A kernel run interactively that signs its records (a key in its environment)
commits the same way with ``extra.sealed_save`` (review 11): its notebook is
sealed when the server extension's pre-save hook saves it. An unsealed
notebook with such a record gets a warning and fails ``--strict`` (not plain
verify: a server without the extension saves such a notebook honestly
unsealed).

Who calls: :func:`glsandbox_kernel.notebook.run.run_notebook` (the kernel's
environment), :class:`glsandbox_kernel.sandbox.OSSandbox` (the session_start
record) and :func:`glsandbox_kernel.notebook.verify.verify_notebook`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

#: set by ``glsandbox run`` in the environment of the kernel it starts
ENV_VAR = "GLSANDBOX_SEALED_RUN"


def mark_kernel_env(env: MutableMapping[str, str]) -> None:
    """``glsandbox run``: the kernel started with ``env`` records that its notebook is sealed."""
    env[ENV_VAR] = "1"


def session_start_extra(signing: bool = False) -> dict[str, Any]:
    """The session_start record's extra fields: ``{"sealed_run": True}`` in a ``glsandbox run`` kernel,
    ``{"sealed_save": True}`` in any other kernel that signs its records (``signing``): its notebook is
    to be sealed when saved (the pre-save hook of the server extension seals every save)."""
    if os.environ.get(ENV_VAR) == "1":
        return {"sealed_run": True}
    return {"sealed_save": True} if signing else {}


def committed_to_seal(records: Iterable[Mapping[str, Any]], field: str = "sealed_run") -> bool:
    """Whether a session_start record among ``records`` commits to a seal (``field``: ``sealed_run``,
    by ``glsandbox run``; ``sealed_save``, by a signing kernel)."""
    for record in records:
        extra = record.get("extra")
        if record.get("event_type") == "session_start" and isinstance(extra, Mapping) and extra.get(field):
            return True
    return False


def seal_problems(records: Iterable[Mapping[str, Any]], sealed: bool, kernel_name: str) -> tuple[list[str], str]:
    """What the verifier must report: ``(problems, unsealed_save)``. Problems: a seal ``glsandbox run``
    committed to that is gone, and kernel records in a notebook that names another kernel.
    ``unsealed_save`` (a warning; ``--strict`` fails on it; "" when none): a signing kernel committed to a
    seal at save time, and the notebook has none (stripped, or saved without the server extension)."""
    problems: list[str] = []
    records = list(records)
    committed = committed_to_seal(records)
    unsealed_save = ""
    if not sealed and not committed and committed_to_seal(records, "sealed_save"):
        unsealed_save = (
            "the notebook has no seal, but its signed session record says a signing kernel made it, whose "
            "notebook the server extension seals on every save: the seal was removed (the markdown cells, the "
            "cell count and order and the kernelspec are not covered), or it was saved without the extension"
        )
    if committed and not sealed:
        problems.append(
            "the notebook seal was removed: its session record (in the chain, signed with the records) says "
            "'glsandbox run' sealed this notebook, so the markdown cells, the cell count and order and the "
            "kernelspec are no longer covered (notebook.metadata['glsandbox'] and the cells' copies are gone)"
        )
    if committed and kernel_name and not kernel_name.startswith("glsandbox"):
        problems.append(
            f"the notebook names the kernel {kernel_name!r}, but its records come from a 'glsandbox run' of the "
            "glsandbox kernel (the kernelspec was changed)"
        )
    return problems, unsealed_save
