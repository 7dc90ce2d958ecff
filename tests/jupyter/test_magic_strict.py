"""``audit verify --strict`` of a signed ``%%sandbox`` notebook (stock python3 kernel, nbclient).

Executed by nbclient (as papermill does), the notebook has no seal, and ``--strict`` used to fail
with the glsandbox kernel's "the seal was removed, or it was saved without the extension". It now
says why a magic notebook needs the server's seal and names the host cells. Saved through the
server extension's pre-save hook (the function the server calls on save), it passes ``--strict``,
and the cells that ran on the host outside any sandbox are named as a finding in the verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..conftest import glsandbox_cli
from ..escape.test_outside15_common import executed

pytestmark = pytest.mark.timeout(400)
KEY = "magic-strict-key-0123456789abcdef"
CELLS = ("%load_ext glsandbox_kernel", "%%sandbox strict\nx = 41\nprint(x + 1)", "y = 2", "%%sandbox strict\nprint(7)")


@pytest.fixture(scope="module")
def magic_nb(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    base = tmp_path_factory.mktemp("magicstrict")
    (base / "hmac.key").write_text(KEY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLSANDBOX_AUDIT_KEY", KEY)  # the kernel nbclient starts signs its records
        nb = executed(base, "python3", *CELLS)
    return nb, base


def _verify(nb: dict[str, Any], base: Path, name: str, *args: str) -> tuple[int, str]:
    path = base / name
    path.write_text(json.dumps(nb), encoding="utf-8")
    res = glsandbox_cli("audit", "verify", str(path), "--key", str(base / "hmac.key"), *args)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, res.stdout


def test_unsealed_magic_notebook_says_why_strict_fails(magic_nb: tuple[dict[str, Any], Path]) -> None:
    nb, base = magic_nb
    code, out = _verify(nb, base, "plain.ipynb")
    assert code == 0, out
    assert "cell 2 (In [1]), cell 4 (In [3]) of this python3 notebook ran on the host" in out, out
    code, out = _verify(nb, base, "plain.ipynb", "--strict")
    assert code == 1, out
    assert "--strict: this python3 notebook's %%sandbox records are signed, but the notebook has no seal" in out
    assert "executed by nbclient/papermill" in out and "(host cells: cell 2 (In [1]), cell 4 (In [3]))" in out
    assert "Save it through a Jupyter server with the glsandbox extension" in out


def test_sealed_magic_notebook_passes_strict_naming_host_cells(
    magic_nb: tuple[dict[str, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from glsandbox_kernel.notebook.presave import pre_save_hook

    nb, base = magic_nb
    nb = json.loads(json.dumps(nb))
    monkeypatch.setenv("GLSANDBOX_AUDIT_KEY", KEY)  # the server holds the key
    pre_save_hook(model={"type": "notebook", "content": nb}, path="sealed.ipynb", contents_manager=None)
    code, out = _verify(nb, base, "sealed.ipynb", "--strict")
    assert code == 0, out
    first = out.splitlines()[0]
    assert first.startswith("OK:") and "(2 ran on the host, unsandboxed)" in first and "1 warning(s)" in first
    assert "warning: --strict finding: cell 2 (In [1]), cell 4 (In [3]) ran on the host outside any sandbox" in out
    assert "Only the %%sandbox cells are proven" in out
    # a host cell edited after the save is caught by the seal
    nb["cells"][3]["source"] = "y = 3"
    code, out = _verify(nb, base, "edited.ipynb", "--strict")
    assert code == 1 and "changed after the notebook was sealed" in out, out
