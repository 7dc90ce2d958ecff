"""Outside review 23: ``glsandbox report`` presents an unsealed, made-up ``metadata.glsandbox`` as the run.

A notebook run by papermill/nbclient in the glsandbox kernel has no seal and no notebook-level
``metadata.glsandbox``. Anyone can add one (``config.level: strict``, ``config.backend: vm``, an
``environment``): nothing covers it without a seal, verify says OK (also ``--strict``) without a
word about it, and the evidence report's "Run" section shows ``level strict``, ``backend vm`` and
the made-up environment under the OK verdict, while every record says moderate/namespace
(``attest`` likewise signs that environment as the run's). README (Evidence): the seal covers
``metadata.glsandbox``; without one, nothing does, so it must not be shown as the run's facts.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import glsandbox_cli
from .test_outside15_common import executed


def test_report_does_not_show_made_up_run_metadata_as_the_run(tmp_path: Path) -> None:
    nb = executed(tmp_path, "glsandbox", "print(6 * 7)")
    assert "glsandbox" not in nb["metadata"]  # nbclient wrote none: nothing seals it
    nb["metadata"]["glsandbox"] = {
        "config": {"level": "strict", "backend": "vm", "isolation": "vm", "sandbox": {"security_level": "strict"}},
        "environment": {"python": "3.99.0", "glsandbox": "9.9"},
        "run": {"completed": True, "cells_run": 1, "violations": 0},
    }
    path = tmp_path / "forged.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    html = tmp_path / "forged.html"
    made = glsandbox_cli("report", str(path), "-o", str(html))
    assert made.returncode == 0, made.stdout + made.stderr  # the records themselves are fine
    page = html.read_text(encoding="utf-8")
    # today: <dt>level</dt><dd>strict</dd><dt>backend</dt><dd>vm</dd> ... python 3.99.0, verdict OK
    assert "<dt>backend</dt><dd>vm</dd>" not in page and "3.99.0" not in page, page[page.find("<h2") :][:600]
