"""``glsandbox audit verify NOTEBOOK.ipynb``: check a notebook's audit evidence (host side).

Who calls: :mod:`glsandbox_kernel.audit.cli` (``verify_notebook_cli``), the
evidence report and ``glsandbox run`` (``verify_notebook``). Nothing here
runs code from the notebook.

What is recomputed from the notebook alone:

- every audit record found in the cells (the record of each cell and the
  records sealed before it: session start, fallback, silent cells ...), from
  the audit output (:data:`~.evidence.AUDIT_MIME`) or, when that was removed,
  the copy in ``cell.metadata["glsandbox"]``;
- each record's ``record_hash`` (an edited record), the chain of each session
  (``seq`` and ``prev_hash``: deleted, inserted, copied or reordered cells),
  and, with a key, every HMAC signature;
- each cell's source against ``extra.source_hash`` (a ``%%sandbox`` line too:
  :mod:`.cell_source`) and its outputs against ``extra.outputs_hash`` /
  ``extra.output_hashes`` (which output was edited, removed or added);
- ``notebook.metadata["glsandbox"]`` (written by ``glsandbox run``): the chain
  head and record count of each session (cells cut off the end) and the
  signature over the head;
- the second copy in ``cell.metadata["glsandbox"]``, which must agree with the
  audit output, and its summary (status, hashes), re-derived from the record and
  the cell;
- who made the seal (a ``glsandbox run``, or the server's pre-save hook), as a note.

Without a key, a notebook whose records were all rewritten and re-hashed
consistently cannot be told from the original: sign with ``--key``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any

from ..audit.keys import Verifier, signature_mismatch, unchecked_signature_note, verifier_from_bytes
from ..audit.records import checked_record_hash
from ..terminal_text import printable
from .cell_source import check_source, is_magic_cell
from .checks import (
    CellCheck,
    _check_audit_output,
    _check_chain,
    _describe_outputs,
    _Entry,
    _magic_order_ok,
    cell_outputs,
    copies_differ,
    held_records,
    hiding_metadata,
    kernelspec_level_warning,
    malformed_cells,
    unencodable_values,
    widget_state_warning,
)
from .evidence import canonical_outputs, find_audit_output, outputs_format, saved_outputs_evidence, streams_as_shown
from .host_cells import host_cells_finding, host_cells_note, unsealed_magic_problem
from .metadata import summary_differences
from .prompts import check_prompt_numbers
from .reading import ReadNotebook, read_notebook
from .seal import METADATA_KEY, cell_source, check_seal
from .sealed_run import seal_problems as sealed_run_problems
from .shape import as_list, as_map


@dataclasses.dataclass
class NotebookVerifyResult:
    """Outcome of :func:`verify_notebook`: ``ok`` only when every check passed."""

    ok: bool
    problems: list[str]
    notes: list[str]
    cells: list[CellCheck]
    sessions: list[dict[str, Any]]
    records: int
    key_checked: bool
    warnings: list[str] = dataclasses.field(default_factory=list)
    #: the notebook-level ``metadata.glsandbox`` is covered by a seal that checked out (report and
    #: attest show its run facts only then)
    sealed: bool = False

    def summary(self) -> str:
        """One line: OK/FAILED, counts."""
        nsess = len(self.sessions)
        host = sum(c.outside for c in self.cells)
        what = f"{len(self.cells)} code cell(s){f' ({host} ran on the host, unsandboxed)' if host else ''}, {self.records} record(s) in {nsess} session{'s' if nsess != 1 else ''}"
        if self.ok:
            sig = ", signatures verified" if self.key_checked else ""
            warned = f" ({len(self.warnings)} warning(s))" if self.warnings else ""
            return f"OK: {what}; chain intact, sources and outputs match{sig}{warned}"
        return f"FAILED: {len(self.problems)} problem(s); {what}"


def _as_dict(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _cell_evidence(cell: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(payload from the audit output, payload from cell metadata); each {"record", "preceding"}."""
    outputs = cell_outputs(cell)
    found = find_audit_output(outputs)
    from_output = found[1] if found is not None else None
    meta = cell.get("metadata") or {}
    from_meta = _as_dict(meta.get(METADATA_KEY)) if isinstance(meta, Mapping) else None
    if from_meta is not None and not isinstance(from_meta.get("record"), Mapping):
        from_meta = None
    if from_output is not None and not isinstance(from_output.get("record"), Mapping):
        from_output = None
    return from_output, from_meta


def _records_of(payload: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    record = dict(payload["record"])
    preceding = [dict(r) for r in as_list(payload.get("preceding")) if isinstance(r, Mapping)]
    return record, preceding


def verify_notebook(
    nb: Mapping[str, Any],
    key: bytes | Verifier | None = None,
    *,
    expected_head: str | None = None,
    expected_count: int | None = None,
    strict: bool = False,
) -> NotebookVerifyResult:
    """Check a notebook's audit evidence; see the module docstring (host side).

    ``nb`` is a ``NotebookNode`` or the plain JSON dict of an nbformat 4
    notebook. ``key`` checks every record signature and the notebook head
    signature. Never raises for a damaged notebook: everything wrong becomes
    a problem.
    """
    read_problems, read_warnings = (nb.problems, nb.warnings) if isinstance(nb, ReadNotebook) else ([], [])
    nb, not_json = unencodable_values(nb)
    not_json = [*read_warnings, *not_json]
    problems: list[str] = list(read_problems)
    notes: list[str] = []
    checks: list[CellCheck] = []
    entries: list[_Entry] = []
    verifier = verifier_from_bytes(key) if isinstance(key, (bytes, bytearray)) else key

    cells = nb.get("cells") or []
    meta_all = nb.get("metadata") or {}
    spec = meta_all.get("kernelspec") if isinstance(meta_all, Mapping) else None
    kernel_name = str(spec.get("name", "")) if isinstance(spec, Mapping) else ""
    # In another kernel only %%sandbox cells run in a sandbox; the others are not evidence.
    magic_only = bool(kernel_name) and not kernel_name.startswith("glsandbox")
    kernel = ("magic" if magic_only else "glsandbox") if kernel_name else None
    for index, cell in enumerate(cells):
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        count = cell.get("execution_count")
        check = CellCheck(index=index, execution_count=count if isinstance(count, int) else None)
        checks.append(check)
        source = cell_source(cell)
        outputs = cell_outputs(cell)
        from_output, from_meta = _cell_evidence(cell)
        found = find_audit_output(outputs)
        found_at = found[0] if found is not None and from_output is not None else None
        payload = from_output or from_meta
        if from_output is not None:
            check.where = "output"
        elif from_meta is not None:
            check.where = "metadata"
            check.problems.append(f"{check.label}: its audit output was removed (the copy in cell metadata remains)")
        if payload is None:
            if magic_only and not is_magic_cell(source):
                check.outside = True
                continue
            if not outputs and check.execution_count is None:
                check.executed = False
                continue  # judged below, once we know where the run stopped
            check.problems.append(
                f"{check.label}: shows {len(outputs)} output(s) but has no audit record: it did not run in "
                "the glsandbox sandbox, or it was inserted, or its audit output was removed"
            )
            continue
        record, preceding = _records_of(payload)
        check.record = record
        if magic_only and not is_magic_cell(source):  # only %%sandbox cells make records in another kernel
            check.problems.append(
                f"{check.label}: holds a record of the glsandbox kernel, but the notebook names the kernel "
                f"{kernel_name!r} (the kernelspec was changed, or the cell was pasted)"
            )
        shown = list(outputs)
        if found_at is not None:
            audit_output = shown.pop(found_at)
            if found_at != len(outputs) - 1 and not is_magic_cell(source):
                check.problems.append(f"{check.label}: output(s) were added after its audit output")
            _check_audit_output(check, audit_output, payload, record)
        if from_output is not None and from_meta is not None:
            if edited := copies_differ(from_meta, from_output):
                check.problems.append(
                    f"{check.label}: its cell metadata's copy of {' and '.join(edited)} disagrees with the audit "
                    "output (one of the two copies was edited)"
                )
            elif differs := summary_differences({"source": source, "outputs": outputs}, from_meta):
                check.problems.append(f"{check.label}: its metadata copy says {'; '.join(differs)}")
        earlier = [dict(r) for r in as_list(payload.get("superseded")) if isinstance(r, Mapping)]
        entries.extend(_Entry(old, check, own=False, superseded=True) for old in earlier)
        held_records(check, record, preceding, earlier, strict, checks)
        if earlier:
            seqs = ", ".join(
                str(r.get("seq"))
                for r in earlier
                if isinstance(r.get("extra"), Mapping) and r["extra"].get("kind") == "cell"
            )
            check.superseded = len(earlier)
            check.warnings.append(
                f"{check.label}: re-executed; the record(s) of its earlier run(s) (seq {seqs or '-'}) are "
                f"superseded by seq {record.get('seq')} and kept in its audit output"
            )
        entries.extend(_Entry(prev, check, own=False) for prev in preceding)
        entries.append(_Entry(record, check, own=True))

        extra = record.get("extra") if isinstance(record.get("extra"), Mapping) else {}
        assert isinstance(extra, Mapping)
        if extra.get("kind") != "cell":
            check.problems.append(f"{check.label}: its audit record is not a cell record (kind {extra.get('kind')!r})")
        check_source(check, source, record, kernel)
        recorded_outputs = extra.get("outputs_hash")
        rec_entries = extra.get("outputs") if isinstance(extra.get("outputs"), list) else None
        if "format" not in record:
            check.outputs_ok = False
            check.problems.append(
                f"{check.label}: its record was written by an older glsandbox (record format 1): its outputs "
                "cannot be checked by this version (run the notebook again)"
            )
        elif recorded_outputs is None:
            check.outputs_ok = None
            check.problems.append(f"{check.label}: its audit record holds no outputs hash")
        else:
            origins = [str(e.get("origin")) for e in rec_entries if isinstance(e, Mapping)] if rec_entries else None
            fmt = outputs_format(extra)
            current = saved_outputs_evidence(shown, origins, fmt)
            if streams_as_shown(shown)[1]:
                check.hidden_text = True
                check.warnings.append(
                    f"{check.label}: its stream output holds text that carriage returns or backspaces hide; the "
                    "record covers the text as shown (so does `glsandbox report`), a raw viewer shows more"
                )
            check.outputs_ok = current["outputs_hash"] == recorded_outputs
            if not check.outputs_ok and found_at is not None and rec_entries and is_magic_cell(source):
                check.outputs_ok = _magic_order_ok(outputs, found_at, rec_entries, fmt)
            if not check.outputs_ok:
                if rec_entries is not None:
                    recorded = [str(e.get("hash")) for e in rec_entries if isinstance(e, Mapping)]
                    what = _describe_outputs([e["hash"] for e in current["outputs"]], recorded)
                elif not canonical_outputs(shown, fmt):
                    what = "outputs removed"
                else:
                    what = "outputs edited"
                check.problems.append(f"{check.label}: {what} after it ran (the record lists every output)")

    # -- records: hashes, signatures ------------------------------------------------------
    signed_noted = False
    for entry in entries:
        rec, check = entry.record, entry.cell
        what = "its audit record" if entry.own else "an audit record stored with it"
        stored = rec.get("record_hash")
        if not isinstance(stored, str) or checked_record_hash(rec) != stored:
            check.chain_ok = False
            check.problems.append(f"{check.label}: {what} was tampered with (its contents no longer match its hash)")
        signature = rec.get("signature")
        if verifier is not None:
            if signature is None:
                check.signature_ok = False
                check.problems.append(f"{check.label}: {what} is not signed (a key was given)")
            elif not verifier.verify(str(stored).encode("ascii", "replace"), signature):
                check.signature_ok = False
                check.problems.append(f"{check.label}: {what} is {signature_mismatch(verifier, signature)}")
            elif check.signature_ok is None:
                check.signature_ok = True
        elif signature is not None and not signed_noted:
            signed_noted = True
            notes.append(unchecked_signature_note("records are", signature))

    # -- chains, per session ----------------------------------------------------------------
    sessions: dict[str, list[_Entry]] = {}
    for entry in entries:
        sessions.setdefault(str(entry.record.get("session_id")), []).append(entry)
    meta = nb.get("metadata") or {}
    nb_meta = _as_dict(meta.get(METADATA_KEY)) if isinstance(meta, Mapping) else None
    listed = {str(s.get("session_id")): s for s in as_list(as_map(nb_meta).get("sessions")) if isinstance(s, Mapping)}
    session_info: list[dict[str, Any]] = []
    for session_id, items in sessions.items():
        session_info.append(_check_chain(session_id, items, listed.get(session_id), problems))
        if listed and session_id not in listed:
            first = next(e for e in items if e.own) if any(e.own for e in items) else items[0]
            first.cell.problems.append(
                f"{first.cell.label}: its record is from session {session_id[:12]}…, which the notebook's "
                "glsandbox metadata does not list (cell pasted from another run?)"
            )
    for session_id in listed:
        if session_id not in sessions:
            problems.append(
                f"session {session_id[:12]}… listed in the notebook metadata has no record in any cell "
                "(all its cells were deleted)"
            )
            session_info.append({"session_id": session_id, "records": 0, "head": None})

    # -- cells that never ran ---------------------------------------------------------------
    run_meta = (nb_meta or {}).get("run") if isinstance((nb_meta or {}).get("run"), Mapping) else None
    stopped = run_meta is not None and not run_meta.get("completed", True)
    last_recorded = max((c.index for c in checks if c.record is not None), default=-1)
    for check in checks:
        if check.executed or not cell_source(cells[check.index]).strip() or last_recorded < 0:
            continue
        if stopped and check.index > last_recorded:
            continue
        check.problems.append(
            f"{check.label}: has no audit record and no outputs: it was not run in the sandbox "
            "(inserted after the run, or never executed)"
        )
    if host_note := host_cells_note(checks, kernel_name):
        notes.append(host_note)
    if stopped:
        notes.append(f"the run stopped early: cells after cell {last_recorded + 1} were not executed")

    if not entries:
        problems.append("no glsandbox audit records in this notebook (was it run with the glsandbox kernel?)")

    seal_problems, seal_notes, sealed = check_seal(nb, verifier)
    problems.extend(seal_problems)
    loose_meta = _uncovered_run_metadata(meta_all, sealed)
    problems.extend(malformed_cells(nb))
    run_problems, unsealed_save = sealed_run_problems([e.record for e in entries], sealed, kernel_name)
    problems.extend(run_problems)
    notes.extend(seal_notes)

    # -- the whole-notebook expectations --------------------------------------------------
    all_hashes = {e.record.get("record_hash") for e in entries}
    if expected_head is not None and expected_head not in all_hashes:
        problems.append(
            f"expected head {expected_head[:16]}… is not in the notebook: cells were removed or the chain was replaced"
        )
    if expected_count is not None and len(all_hashes) < expected_count:
        problems.append(f"the notebook holds {len(all_hashes)} record(s), expected at least {expected_count}")

    check_prompt_numbers(checks, cells)  # Out[7] beside In [1]: no hash covers them, a reader trusts them
    warnings: list[str] = list(not_json)  # where covered, its hash names it too
    for check in checks:
        problems.extend(check.problems)
        warnings.extend(check.warnings)
    timed = [(c, c.record) for c in checks if c.record is not None and isinstance(c.record.get("seq"), int)]
    run_order = [c for c, _r in sorted(timed, key=lambda cr: (str(cr[1].get("session_id")), int(cr[1]["seq"])))]
    if any(c.out_of_order for c in checks):
        warnings.append("actual order of execution: " + ", ".join(c.label for c in run_order))
    if unsealed_save:
        warnings.append(unsealed_save)
    if loose_meta:
        warnings.append(loose_meta)
    widget_state = widget_state_warning(nb)
    if widget_state:
        warnings.append(widget_state)
    spec_level = kernelspec_level_warning(
        nb, {str(e.record["security_level"]) for e in entries if e.record.get("security_level")}
    )
    if spec_level:
        warnings.append(spec_level)
    hidden, removed = hiding_metadata(nb)
    if hidden:
        warnings.append(f"{', '.join(hidden[:10])}: metadata (not covered) folds the source or outputs in a view")
    if removed:
        warnings.append(f"{', '.join(removed[:10])}: metadata (not covered) drops covered content from exports")
    if strict:
        problems.extend("--strict: " + w for w in not_json[:3])
        if unsealed_save:
            problems.append(unsealed_magic_problem(checks, kernel_name) if magic_only else "--strict: " + unsealed_save)
        if finding := host_cells_finding(checks, sealed and not seal_problems):
            warnings.append(finding)
        if loose_meta:
            problems.append("--strict: " + loose_meta)
        if widget_state:
            problems.append("--strict: " + widget_state)
        if spec_level:
            problems.append("--strict: " + spec_level)
        if removed:
            problems.append(f"--strict: {', '.join(removed[:10])}: metadata drops covered content from exports")
        if any(c.superseded for c in checks) or any(c.out_of_order for c in checks):
            problems.append("--strict: not one clean top-to-bottom run (cells were re-executed or ran out of order)")
        if renumbered := [c.label for c in checks if c.renumbered]:
            problems.append(f"--strict: prompt numbers were changed after the cells ran: {', '.join(renumbered[:10])}")
        if any(c.hidden_text for c in checks):
            problems.append("--strict: stream output holds text hidden by carriage returns or backspaces")
        if len(sessions) > 1:
            problems.append(f"--strict: the cells ran in {len(sessions)} sandbox sessions, not one")
        executed = [c for c in checks if c.record is not None]
        if executed and any(not c.executed and c.index < executed[-1].index for c in checks):
            problems.append("--strict: some code cells above the last executed one were not run")
    return NotebookVerifyResult(
        ok=not problems,
        problems=problems,
        notes=notes,
        cells=checks,
        sessions=session_info,
        records=len(entries),
        key_checked=verifier is not None,
        warnings=warnings,
        sealed=sealed and not seal_problems,
    )


def _uncovered_run_metadata(meta: Any, sealed: bool) -> str | None:
    """The warning for a notebook-level ``metadata.glsandbox`` that no seal covers, or None."""
    info = meta.get(METADATA_KEY) if isinstance(meta, Mapping) else None
    if sealed or not isinstance(info, Mapping) or not any(k in info for k in ("config", "environment", "run")):
        return None
    return (
        "the notebook-level glsandbox metadata (config, environment, run) is not sealed: nothing covers it, "
        "so it is not shown as the run's; the records are the evidence"
    )


# -- CLI --------------------------------------------------------------------------------------------


def load_verify_key(path: str | None) -> bytes | None:
    """The key material from ``--key FILE``, else ``$GLSANDBOX_AUDIT_KEY``, else None."""
    from ..audit.log import load_key

    return load_key(path) if path else load_key()


def verify_notebook_cli(args: argparse.Namespace) -> int:
    """``glsandbox audit verify X.ipynb``: print the result; 0 ok, 1 problems, 2 usage error."""
    from ..audit.cli import load_verifier

    path: str = args.file
    try:
        verifier = load_verifier(args)
    except OSError as exc:
        name = getattr(args, "pubkey", None) or args.key
        print(f"glsandbox audit: error: cannot read key file {name}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"glsandbox audit: error: {exc}", file=sys.stderr)
        return 2
    try:
        nb = read_notebook(path)
    except OSError as exc:
        print(printable(f"glsandbox audit: error: cannot read {path}: {exc.strerror or exc}"), file=sys.stderr)
        return 2
    except ValueError as exc:  # the parser's message may quote the file
        print(printable(f"glsandbox audit: error: {path} is not a notebook: {exc}", one_line=True), file=sys.stderr)
        return 2
    result = verify_notebook(
        nb,
        verifier,
        expected_head=getattr(args, "expected_head", None),
        expected_count=getattr(args, "expected_count", None),
        strict=bool(getattr(args, "strict", False)),
    )
    head, _sep, rest = result.summary().partition(":")
    print(f"{head}: {printable(os.fspath(path), one_line=True)}:{rest}")
    for problem in result.problems:  # these quote the notebook's own text (session ids, seqs): escaped
        print(f"  {printable(problem, one_line=True)}")
    for warning in result.warnings:
        print(f"warning: {printable(warning, one_line=True)}")
    for note in result.notes:
        print(f"note: {printable(note, one_line=True)}")
    if verifier is None and result.records:
        print(
            "note: no key given: this proves the notebook is consistent, not who made it. Anyone can rewrite "
            "outputs and re-hash every record and the seal consistently; only a signature (--key FILE, "
            "--pubkey FILE or $GLSANDBOX_AUDIT_KEY) proves the evidence came from the sandbox's host"
        )
    return 0 if result.ok else 1


__all__ = ["CellCheck", "NotebookVerifyResult", "read_notebook", "verify_notebook", "verify_notebook_cli"]
