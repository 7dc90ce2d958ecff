"""Outside review (7th): ``level`` set in ``glsandbox_kernel_config.json`` is silently overridden by the kernelspec.

Attack / plain use: the README documents ``glsandbox_kernel_config.json`` in a
Jupyter config folder as the place for the kernel's options, ``level`` first
(``{"SandboxKernel": {"level": ...}}``). But every kernelspec glsandbox
writes (``kernel/install.py:kernel_spec``, ``glsandbox install``) carries
``--SandboxKernel.level=moderate`` (or the level given to ``install``) on its
argv, and the command line wins over config files. An analyst (or an
administrator's site-wide config) asking for STRICT gets MODERATE: the project
folder is shown, and the audit trail records ``moderate`` as if asked; no
warning. The file is read (its ``audit_log`` applies), only the level is lost.

Measured here (root, namespace): with ``{"SandboxKernel": {"level": "strict",
"audit_log": ...}}`` in ``$JUPYTER_CONFIG_DIR``, the cell listed the project
folder (STRICT hides it) and the session_start record says
``security_level: moderate``.

Judged from the host: the audit log the config file names records STRICT, and
the cell does not see the project's file.

Fix (suggested): leave ``level`` off the kernelspec argv unless ``install`` was
given ``--level`` (moderate is the trait's default), or let the stricter of
argv and file win for the policy options; at least warn when the argv
overrides an option the config file sets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_outside6_common import data_project, run_with_config

pytestmark = pytest.mark.timeout(300)


def test_a_strict_level_in_the_kernel_config_file_is_what_runs(tmp_path: Path) -> None:
    project, audit = data_project(tmp_path)
    said = run_with_config(tmp_path, project, {"SandboxKernel": {"level": "strict", "audit_log": str(audit)}})
    assert audit.exists(), "the config file was not read at all (its audit_log was not used)"
    levels = [json.loads(line).get("security_level") for line in audit.read_text().splitlines() if line.strip()]
    assert levels and set(levels) == {"strict"} and "data.csv" not in said, (
        f"glsandbox_kernel_config.json asked for level strict; the audit records {sorted(set(levels))} "
        f"and the cell saw the project: {said.strip()!r}"
    )
