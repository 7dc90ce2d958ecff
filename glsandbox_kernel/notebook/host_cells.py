"""What ``audit verify`` says of a ``%%sandbox`` notebook's host cells (host side, verifier).

Who calls: :func:`glsandbox_kernel.notebook.verify.verify_notebook`. In a stock IPython kernel
only ``%%sandbox`` cells run in a sandbox and make records; every other code cell ran on the host,
in the kernel process that runs the magic (and holds any signing key). Those cells are the notebook
author's own code, not evidence: nothing records what they did, so they could have changed what a
sandboxed cell was given (``--in``) or what the notebook shows around it. ``--strict`` does not fail
on them (an honest magic notebook has them by design) but names each one as a warning, in the
verdict's count, so an auditor never reads "OK" for such a notebook without seeing which cells ran
unsandboxed. A signed magic notebook without a seal fails ``--strict`` with the reason spelled out:
without the seal (made by the server extension's pre-save hook on save; nbclient and papermill
write none) nothing covers the host cells, nor host cells deleted or inserted.
"""

from __future__ import annotations

from collections.abc import Sequence

from .checks import CellCheck


def host_labels(checks: Sequence[CellCheck]) -> list[str]:
    """The labels of the cells that ran on the host, outside any sandbox (``check.outside``)."""
    return [c.label for c in checks if c.outside]


def _listed(labels: list[str]) -> str:
    return ", ".join(labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")


def host_cells_note(checks: Sequence[CellCheck], kernel_name: str) -> str | None:
    """The note naming the host cells of a ``kernel_name`` (non-glsandbox) notebook, or None."""
    labels = host_labels(checks)
    if not labels:
        return None
    return (
        f"{_listed(labels)} of this {kernel_name} notebook ran on the host, outside any sandbox (not %%sandbox "
        "cells): they are not covered by the audit evidence"
    )


def host_cells_finding(checks: Sequence[CellCheck], sealed: bool) -> str | None:
    """The ``--strict`` warning naming the host cells and what they could have done, or None."""
    labels = host_labels(checks)
    if not labels:
        return None
    cover = (
        "the seal covers their source and outputs as saved"
        if sealed
        else "no seal covers them: host cells may have been edited, deleted or inserted unseen"
    )
    return (
        f"--strict finding: {_listed(labels)} ran on the host outside any sandbox: the notebook author's own "
        "code, unconfined and unrecorded, in the kernel process that runs the magic (and holds any signing "
        f"key); it could have changed the inputs (--in) or the context of the sandboxed cells; {cover}. "
        "Only the %%sandbox cells are proven"
    )


def unsealed_magic_problem(checks: Sequence[CellCheck], kernel_name: str) -> str:
    """The ``--strict`` problem for a signed ``%%sandbox`` notebook that has no seal."""
    labels = host_labels(checks)
    hosts = f" (host cells: {_listed(labels)})" if labels else ""
    return (
        f"--strict: this {kernel_name} notebook's %%sandbox records are signed, but the notebook has no seal: "
        "it was executed by nbclient/papermill or saved without the glsandbox server extension (or its seal "
        f"was removed), so nothing covers the cells that ran on the host{hosts}, the cell order, or host cells "
        "deleted or inserted. Save it through a Jupyter server with the glsandbox extension (its pre-save hook "
        "seals it) to pass --strict"
    )


__all__ = ["host_cells_finding", "host_cells_note", "host_labels", "unsealed_magic_problem"]
