"""Does a code cell's source, ``%%sandbox`` line included, match its record? (host side)

Who calls: :func:`glsandbox_kernel.notebook.verify.verify_notebook`, once per
code cell with a record (:func:`check_source`). Nothing here runs code from
the notebook.

Who made the record decides what its ``extra.source_hash`` covers:

- the glsandbox kernel hashes the cell as it ran: the plain source, or, for a
  cell that starts with a ``%%sandbox`` limits line, that line as a comment
  (:func:`~glsandbox_kernel.kernel.limits.commented_options_line`); so in a
  glsandbox-kernel notebook a hash of the body alone means "there was no line";
- the ``%%sandbox`` magic of an IPython kernel runs only the body (IPython
  passes the line apart), so its record hashes the body; since review 16 it
  also records the line itself (``extra.magic_line``: what IPython passed as
  the magic's line), and the line the cell shows must be that one. A magic
  record without ``magic_line`` (an older glsandbox) is checked as it was
  made: the body, and the level the line asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..kernel.limits import commented_options_line
from .evidence import source_hash

MAGIC = "%%sandbox"


def is_magic_cell(source: str) -> bool:
    """A cell that starts with a ``%%sandbox`` line (the magic's, or the kernel's limits line)."""
    return source.lstrip().startswith(MAGIC)


def _first_and_body(source: str) -> tuple[str, str]:
    first, _newline, body = source.lstrip().partition("\n")
    return first, body


def magic_line(source: str) -> str:
    """The line IPython passes the ``%%sandbox`` magic for this cell (IPython's ``cell_magic``
    transform: the first line without ``%%`` and trailing space, after the magic's name)."""
    return _first_and_body(source)[0][2:].rstrip().partition(" ")[2]


def line_level(line: str) -> str | None:
    """The security level the magic runs ``line`` at, parsed by the magic's own parser (so an option
    prefix such as ``--no`` for ``--no-monitor`` reads as the magic reads it); None when it refuses it."""
    from IPython.core.error import UsageError
    from IPython.core.magic_arguments import parse_argstring

    from ..magics.magic import SandboxMagics

    try:
        args = parse_argstring(SandboxMagics.sandbox, line)
    except (UsageError, SystemExit, ValueError):
        return None
    return str(args.level or "moderate")


def source_hashes(source: str, kernel: str | None) -> set[str]:
    """The hashes a record without ``magic_line`` may hold for this cell source.

    ``kernel``: ``"glsandbox"`` (the notebook names a glsandbox kernel: the plain
    source, or the ``%%sandbox`` line as the comment it ran as), ``"magic"``
    (another kernel: also the body the magic ran, IPython adding a final newline
    when it has none), None (no kernelspec: any of these).
    """
    hashes = {source_hash(source)}
    if is_magic_cell(source):
        hashes.add(source_hash(commented_options_line(source)))
        if kernel != "glsandbox":
            body = _first_and_body(source)[1]
            hashes |= {source_hash(body), source_hash(body + "\n")}
    return hashes


def check_source(check: Any, source: str, record: Mapping[str, Any], kernel: str | None) -> None:
    """Set ``check.source_ok`` and name what of the source changed since ``record`` was made."""
    extra = record.get("extra") if isinstance(record.get("extra"), Mapping) else {}
    assert isinstance(extra, Mapping)
    recorded = extra.get("source_hash")
    ran_line = extra.get("magic_line")
    if isinstance(ran_line, str):  # the magic ran the body; the line is in the record as IPython passed it
        body = _first_and_body(source)[1]
        check.source_ok = is_magic_cell(source) and recorded in {source_hash(body), source_hash(body + "\n")}
        if not check.source_ok:
            check.problems.append(f"{check.label}: source edited after it ran (its hash no longer matches the record)")
        if is_magic_cell(source) and magic_line(source) != ran_line:
            check.source_ok = False
            check.problems.append(
                f"{check.label}: its %%sandbox line was edited after it ran: it shows "
                f"{_shown(MAGIC + ' ' + magic_line(source))}, the cell ran with {_shown(MAGIC + ' ' + ran_line)}"
            )
        return
    check.source_ok = recorded in source_hashes(source, kernel)
    if not check.source_ok:
        check.problems.append(f"{check.label}: source edited after it ran (its hash no longer matches the record)")
    if kernel == "glsandbox" or not is_magic_cell(source):
        return  # the kernel's record hashes its %%sandbox line (limits only; the level is the kernel's)
    level = line_level(magic_line(source))
    if level != record.get("security_level"):
        check.source_ok = False
        says = f"says level {level}" if level else "is one the magic refuses"
        check.problems.append(
            f"{check.label}: its %%sandbox line {says} but it ran at level "
            f"{record.get('security_level')} (the magic line was edited)"
        )


def _shown(text: str) -> str:
    return repr(text if len(text) <= 160 else text[:160] + "…")


def magic_notebook_note(nb: Any, path: str) -> str | None:
    """Why ``glsandbox run`` is the wrong door for ``nb``, or None: a notebook of another kernel
    (``python3``) whose ``%%sandbox`` lines are the magic's (``strict --in activity``), which the
    sandbox kernel's limits line refuses (``UsageError``), so the run would stop at the first."""
    from ..exceptions import CellOptionsError
    from ..kernel.limits import split_cell_options

    spec = nb.metadata.get("kernelspec") if isinstance(nb.metadata, Mapping) else None
    name = str(spec.get("name", "")) if isinstance(spec, Mapping) else ""
    if not name or name.startswith("glsandbox"):
        return None
    for index, cell in enumerate(nb.cells):
        source = "".join(cell.get("source", "")) if cell.get("cell_type") == "code" else ""
        if not is_magic_cell(source):
            continue
        try:
            split_cell_options(source.lstrip())
        except CellOptionsError:
            return (
                f"{path} is a notebook of the {name!r} kernel with %%sandbox magic cells (cell {index + 1}: "
                f"{magic_line(source)[:80]!r}); glsandbox run executes every cell in the sandbox kernel, whose "
                f"%%sandbox line takes limits only. Run it in its own kernel: papermill {path} OUT.ipynb, or "
                f"jupyter nbconvert --to notebook --execute {path}; then glsandbox audit verify OUT.ipynb"
            )
    return None


__all__ = ["check_source", "is_magic_cell", "line_level", "magic_line", "magic_notebook_note", "source_hashes"]
