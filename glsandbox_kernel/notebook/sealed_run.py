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


def session_start_extra() -> dict[str, Any]:
    """The session_start record's extra fields: ``{"sealed_run": True}`` in a ``glsandbox run`` kernel."""
    return {"sealed_run": True} if os.environ.get(ENV_VAR) == "1" else {}


def committed_to_seal(records: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a session_start record among ``records`` says its notebook was sealed by ``glsandbox run``."""
    for record in records:
        extra = record.get("extra")
        if record.get("event_type") == "session_start" and isinstance(extra, Mapping) and extra.get("sealed_run"):
            return True
    return False


def seal_problems(records: Iterable[Mapping[str, Any]], sealed: bool, kernel_name: str) -> list[str]:
    """What the verifier must report: a seal the chain committed to that is gone, and kernel records
    in a notebook that names another kernel."""
    problems: list[str] = []
    committed = committed_to_seal(records)
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
    return problems
