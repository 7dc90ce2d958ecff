"""Cell metadata verify names (review 11 findings 1, 2, 5): exports that drop covered content, views that
fold it, damaged cells, and the seal commitment of a signing kernel."""

from __future__ import annotations

from typing import Any

from glsandbox_kernel.notebook.checks import hiding_metadata, malformed_cells
from glsandbox_kernel.notebook.sealed_run import ENV_VAR, seal_problems, session_start_extra


def _nb(*metas: dict[str, Any]) -> dict[str, Any]:
    return {"cells": [{"cell_type": "code", "source": "", "outputs": [], "metadata": m} for m in metas]}


def test_export_dropping_and_view_folding_metadata_are_told_apart() -> None:
    hide, remove = hiding_metadata(
        _nb(
            {"slideshow": {"slide_type": "skip"}},
            {"slideshow": {"slide_type": "notes"}},
            {"tags": ["remove-stderr"]},
            {"nbsphinx": "hidden"},
            {"tags": ["remove_stdout"]},
            {"hide_input": True},
            {"tags": ["hide-output"]},
            {"slideshow": {"slide_type": "fragment"}},
            {"tags": ["mine"]},
            {"mystnb": {"remove_code_outputs": True}},
            {"mystnb": {"output_stderr": "remove-warn"}},
            {"mystnb": {"output_stderr": "show", "remove_code_source": False}},
        )
    )
    assert remove == [
        "cell 1 (slideshow.slide_type skip)",
        "cell 2 (slideshow.slide_type notes)",
        "cell 3 (tag remove-stderr)",
        "cell 4 (nbsphinx hidden)",
        "cell 5 (tag remove_stdout)",
        "cell 10 (mystnb.remove_code_outputs)",
        "cell 11 (mystnb.output_stderr remove-warn)",
    ]
    assert hide == ["cell 6 (hide_input/hide_output)", "cell 7 (tag hide-output)"]


def test_damaged_cells_are_named() -> None:
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": ["# R\n", 5]},
            {"cell_type": "code", "source": "", "outputs": {"image/png": "x"}},
            {"cell_type": "code", "source": "", "outputs": ["x"]},
            "not a cell",
            {"cell_type": "code", "source": ["ok"], "outputs": []},
        ]
    }
    problems = malformed_cells(nb)
    assert [p.split(":")[0] for p in problems] == ["cell 1", "cell 2", "cell 3", "cell 4"], problems


def test_a_signing_kernel_commits_to_a_seal_at_save_time(monkeypatch: Any) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert session_start_extra(False) == {}
    assert session_start_extra(True) == {"sealed_save": True}
    monkeypatch.setenv(ENV_VAR, "1")
    assert session_start_extra(True) == {"sealed_run": True}
    save = [{"event_type": "session_start", "extra": {"sealed_save": True}}]
    assert seal_problems(save, True, "glsandbox") == ([], "")
    problems, unsealed = seal_problems(save, False, "glsandbox")
    assert not problems and "no seal" in unsealed  # a warning; --strict fails on it
    run = [{"event_type": "session_start", "extra": {"sealed_run": True}}]
    assert seal_problems(run, False, "glsandbox")[0]  # glsandbox run: always a problem
