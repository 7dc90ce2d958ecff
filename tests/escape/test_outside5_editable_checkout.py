"""Outside review (6th): a checkout named by a ``.pth`` file (an editable install) is shown whole, secrets unmasked.

Attack (or plain use): the analyst's project is installed editable into the
kernel's environment (``pip install -e .`` with hatchling's or Poetry's
default, setuptools' ``editable_mode=compat``, ``setup.py develop``: each
writes a ``.pth`` file naming the checkout's root). The checkout holds what
checkouts hold: ``.env`` with API keys, ``.git/config`` with a token, a
deploy key. ``project._compute_environment_paths`` adds every folder a
``.pth`` line names to the *Python environment*; ``confinement/mounts.py``
binds environment paths read-only with ``exempt=True`` and no masks, BASIC's
Landlock grants them whole, and ``project_layout`` skips the mask scan for
any shown folder *under* an environment path ("interpreter folders hold no
user secrets"). So:

- at STRICT, where the project folder is "not shown", the sandbox reads the
  checkout's ``.env``, ``.git/config`` and ``id_ed25519`` at their own paths;
- at MODERATE, with the notebook in that checkout (its project folder), the
  masks of ``.env``/``.git``/``id_*`` are not applied at all.

Measured here (namespace and basic, as root): every secret file read in full.

Judged from the host: the test writes one ``.pth`` file naming a temporary
checkout into this interpreter's site-packages (removed afterwards), starts a
fresh host process (environment paths are computed once per process), and
checks what the sandboxed function returned against the secrets it wrote.

Fix (suggested): ``project.py``: treat ``.pth`` folders as user folders:
apply ``find_masked`` to them (and never skip the scan for a shown folder
under one), or show only the importable packages/modules a ``.pth`` folder
holds (as is done for glsandbox's own checkout), never the folder itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest

from ..conftest import ROOT
from .test_outside5_common import need

SECRETS = {
    ".env": "OPENAI_API_KEY=sk-fake-a5-editable-secret\n",
    ".git/config": '[remote "origin"]\n\turl = https://a5:ghp_fakeToken@example.org/x.git\n',
    "id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY----- fake a5\n",
}

#: the host process: one sandboxed call that reads the checkout's secrets
HOST = r"""
import json, sys
sys.path.insert(0, sys.argv[6])  # the checkout's tests: the attack is test_outside_late_secrets.attack_read
from glsandbox_kernel import FilesystemConfig, IsolationType, OSSandbox, create_config_by_level
from tests.escape.test_outside_late_secrets import attack_read

def factor():
    import emissions  # SANDBOX side: the editable package still imports through the .pth entry

    return emissions.FACTOR


backend, level, checkout, project = sys.argv[1:5]
fs = FilesystemConfig(project_dir=project, project_access="read")
cfg = create_config_by_level(level, isolation_type=IsolationType(backend), filesystem=fs)
with OSSandbox(cfg) as sb:
    got = sb.execute(attack_read, [checkout + "/" + name for name in json.loads(sys.argv[5])])
    got["FACTOR"] = sb.execute(factor)
print("RESULT " + json.dumps(got))
"""


@pytest.mark.parametrize(
    ("backend", "level", "notebook_in_checkout"),
    [
        pytest.param("namespace", "strict", False, id="namespace-strict-library"),
        pytest.param("namespace", "moderate", True, id="namespace-moderate-project"),
        pytest.param("basic", "strict", False, id="basic-strict-library"),
    ],
)
def test_an_editable_checkouts_secrets_stay_hidden(
    backend: str, level: str, notebook_in_checkout: bool, tmp_path: Path
) -> None:
    need(backend)
    os.chmod(tmp_path, 0o755)
    checkout = tmp_path / "emissions"
    (checkout / "emissions").mkdir(parents=True)
    (checkout / "emissions" / "__init__.py").write_text("FACTOR = 2.68\n")
    (checkout / "pyproject.toml").write_text('[project]\nname = "emissions"\n')
    (checkout / ".git").mkdir()
    for name, text in SECRETS.items():
        (checkout / name).write_text(text)
    elsewhere = tmp_path / "notebooks"
    elsewhere.mkdir()
    project = checkout if notebook_in_checkout else elsewhere
    pth = Path(sysconfig.get_paths()["purelib"]) / f"__editable__.a5probe_{uuid.uuid4().hex[:8]}.pth"
    pth.write_text(f"{checkout}\n")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", HOST, backend, level, str(checkout), str(project), json.dumps(list(SECRETS)), ROOT],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=str(tmp_path),
        )
    finally:
        pth.unlink()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"host process failed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    got = json.loads(lines[-1][len("RESULT ") :])
    assert got.pop("FACTOR") == 2.68, "the editable package no longer imports in the sandbox"
    leaked = {p: v for p, v in got.items() if isinstance(v, str) and v == SECRETS[p[len(str(checkout)) + 1 :]]}
    assert not leaked, f"{backend} {level}: the sandbox read the editable checkout's secrets: {leaked}"
