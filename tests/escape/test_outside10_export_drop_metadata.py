"""Outside review (11th): cell metadata that drops covered outputs from exports passes ``verify --strict``.

Attack: the run (``glsandbox run --sign-key``) printed ``WARNING: data leak
detected`` on stderr. The tamperer keeps every covered byte and only adds
uncovered cell metadata that exporters act on:

- ``metadata.slideshow.slide_type = "skip"`` (or ``"notes"``): ``jupyter
  nbconvert --to slides`` leaves the whole cell (source and outputs) out of the
  deck (``notes``: into the speaker notes only); measured below with the real
  nbconvert: the warning is in the deck of the honest notebook and gone from
  the tampered one's;
- the ``remove-stderr`` tag (Jupyter Book drops the cell's stderr from the
  book), and ``metadata.nbsphinx = "hidden"`` (nbsphinx leaves the cell out
  of the documentation).

Measured: ``glsandbox audit verify --pubkey --strict`` prints ``OK ...
signatures verified`` with no warning for each. Review 10's fix names only the
``remove-cell/input/output`` tags and ``transient.remove_source``
(``notebook/checks.py:hiding_metadata``, ``REMOVING_TAGS``), so the fix does
not hold for the other export switches.

Severity: medium (covered evidence silently removed from the exported view
of a signed notebook; --strict is the auditor's "nothing hidden" switch).
Fix (suggested): treat ``slideshow.slide_type`` in {skip, notes}, every
``remove-*`` tag (``remove-stderr``, Jupyter Book's), ``nbsphinx: hidden``
and ``hide_input`` as dropping/hiding metadata (warning; --strict fails on
the dropping ones), or invert the rule: --strict fails on any cell
metadata key outside a small allowlist.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .test_outside10_common import WARNING, code_cell, save, signed_notebook, verify

pytestmark = pytest.mark.timeout(500)


def _skip(meta: dict[str, Any]) -> None:
    meta["slideshow"] = {"slide_type": "skip"}


def _notes(meta: dict[str, Any]) -> None:
    meta["slideshow"] = {"slide_type": "notes"}


def _remove_stderr(meta: dict[str, Any]) -> None:
    meta["tags"] = ["remove-stderr"]


def _nbsphinx_hidden(meta: dict[str, Any]) -> None:
    meta["nbsphinx"] = "hidden"


def _slides(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "slides", str(path), "--output-dir", str(path.parent / "deck")],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stderr
    return (path.parent / "deck" / f"{path.stem}.slides.html").read_text(encoding="utf-8")


def test_export_dropping_metadata_is_named_by_strict_verify(tmp_path: Path) -> None:
    nb, pub = signed_notebook(tmp_path)
    honest = save(nb, tmp_path / "honest.ipynb")
    assert WARNING in _slides(honest)
    passed = []
    for change in (_skip, _notes, _remove_stderr, _nbsphinx_hidden):
        code_cell(nb, 0)["metadata"].pop("slideshow", None)
        code_cell(nb, 0)["metadata"].pop("tags", None)
        code_cell(nb, 0)["metadata"].pop("nbsphinx", None)
        change(code_cell(nb, 0)["metadata"])
        tampered = save(nb, tmp_path / f"{change.__name__.strip('_')}.ipynb")
        if change is _skip:
            assert WARNING not in _slides(tampered)  # the covered stderr is gone from the export
        result = verify(tampered, pub)
        if result.returncode == 0:
            passed.append(f"{change.__name__}: {result.stdout.strip()}")
    assert not passed, "verify --strict passed notebooks whose metadata drops covered outputs:\n" + "\n".join(passed)
