"""Outside review (13th): a ``glsandbox run --level lenient`` keeps a notebook's "strict" kernelspec under a signed seal.

``run.py: run_notebook`` rewrites the kernelspec only when it does not already name a
glsandbox kernel; a notebook written for ``glsandbox-strict`` ("Python 3 (sandboxed,
strict)") and run with ``--level lenient`` keeps that kernelspec, and the seal signs it.

Attack / failure: the analyst (or a pipeline) runs the strict notebook at a weaker level
(lenient: project writable, more syscalls, network per the allowlist) and hands over the
signed output. Measured: the sealed notebook still names ``glsandbox-strict`` /
"Python 3 (sandboxed, strict)" (what JupyterLab shows in its kernel indicator and what a
reader takes as the level), every record says ``security_level: lenient``, and
``glsandbox audit verify --pubkey --strict``, ``glsandbox report`` and ``glsandbox attest``
all say OK with no problem or warning.

Severity: medium-low (signed evidence whose visible kernel name claims a stronger level
than the one the records show; the per-cell level is only in the report's table).
Fix (suggested): ``run_notebook`` writes the kernelspec of the level it really runs at
(``default_name(args.level)``) whenever ``--level`` is given, and the verifier names a
kernelspec whose level (``glsandbox-<level>``) differs from the records' ``security_level``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import glsandbox_cli
from .test_outside5_common import folders, need

pytestmark = pytest.mark.timeout(500)


def _strict_notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "glsandbox-strict",
        "display_name": "Python 3 (sandboxed, strict)",
        "language": "python",
    }
    nb.cells.append(nbformat.v4.new_markdown_cell("# Emissions\nRun in the strict sandbox."))
    nb.cells.append(nbformat.v4.new_code_cell("print('total: 17')"))
    nbformat.write(nb, str(path))


def test_a_lenient_run_of_a_strict_notebook_is_not_sealed_as_strict(tmp_path: Path) -> None:
    need("namespace")
    pytest.importorskip("cryptography")
    key = tmp_path / "signing.key"
    assert glsandbox_cli("keygen", str(key)).returncode == 0
    project, _host_only = folders(tmp_path)  # lenient writes the project: not a root-owned folder
    _strict_notebook(project / "nb.ipynb")
    out = tmp_path / "out.ipynb"
    ran = glsandbox_cli("run", str(project / "nb.ipynb"), "-o", str(out), "--sign-key", str(key), "--level", "lenient")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    nb = json.loads(out.read_text(encoding="utf-8"))
    levels = {
        c["metadata"]["glsandbox"]["record"].get("security_level")
        for c in nb["cells"]
        if c["cell_type"] == "code" and "glsandbox" in c.get("metadata", {})
    }
    assert levels == {"lenient"}, levels  # the records tell the truth
    claims_strict = "strict" in nb["metadata"]["kernelspec"]["name"]
    verified = glsandbox_cli("audit", "verify", str(out), "--pubkey", f"{key}.pub", "--strict")
    named = verified.returncode != 0 or "kernelspec" in verified.stdout
    assert not claims_strict or named, (
        f"the signed, sealed notebook names kernel {nb['metadata']['kernelspec']} although it ran at "
        f"lenient, and verify --strict says nothing:\n{verified.stdout}"
    )
