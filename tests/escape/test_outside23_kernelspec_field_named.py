"""Outside review 23: an edited kernelspec / language_info field is reported as "was X, now X".

Changing only ``kernelspec.display_name`` (what JupyterLab shows as the kernel: "Python 3
(sandboxed, strict, VM)") or ``language_info.version`` of a sealed notebook fails verify, but the
message names only ``name``, which did not change: "the kernelspec changed after the notebook was
sealed (was 'glsandbox', now 'glsandbox')". The auditor is not told which field was edited.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import need, write_notebook


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [("kernelspec", "display_name", "Python 3 (sandboxed, strict, VM)"), ("language_info", "version", "3.99.0")],
)
def test_verify_names_the_edited_field(tmp_path: Path, section: str, field: str, value: str) -> None:
    need("namespace")
    write_notebook(tmp_path / "nb.ipynb", "print('hello')")
    key = tmp_path / "signing.key"
    assert glsandbox_cli("keygen", str(key)).returncode == 0
    ran = glsandbox_cli("run", str(tmp_path / "nb.ipynb"), "--sign-key", str(key))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    data = json.loads((tmp_path / "nb.glsandbox.ipynb").read_text(encoding="utf-8"))
    data["metadata"][section][field] = value
    tampered = tmp_path / "tampered.ipynb"
    tampered.write_text(json.dumps(data), encoding="utf-8")
    verdict = glsandbox_cli("audit", "verify", str(tampered), "--pubkey", f"{key}.pub")
    assert verdict.returncode == 1, verdict.stdout
    # today: "the kernelspec changed after the notebook was sealed (was 'glsandbox', now 'glsandbox')"
    assert field in verdict.stdout or value in verdict.stdout, verdict.stdout
