"""Outside review (7th): the kernel's early sandbox starts with laxer options than the kernel asks, and acts on them.

Plain use: ``SandboxKernelApp.start_sandbox_early`` builds its options from
the flat sections of the config only (``config["SandboxKernel"]`` ...), while
the kernel (made with ``parent=app``) also reads parent-scoped config
(``{"SandboxKernelApp": {"SandboxKernel": {...}}}``, which traitlets lets win).
With ``level: strict`` given that way the kernel runs STRICT -- correct -- but
only after the early sandbox was started at the kernelspec's MODERATE with the
project folder shown, and then thrown away. Starting it is not free of
effects: it made ``sandbox-output/`` in the project (STRICT makes none, the
README's table), and it is a worker that ran with a policy nobody asked for.

Measured here (root, namespace): after one STRICT cell, the project holds a
new ``sandbox-output/`` owned like the project; the audit log records STRICT.

Judged from the host: a STRICT kernel leaves the project folder as it was.

Fix (suggested): build the early options with the kernel's own config
resolution (instantiate ``KernelOptions`` with ``parent=self`` under the
kernel class's section names, or resolve with ``_find_my_config``), and make
the early sandbox side-effect free until it is taken (create the output folder
at take-over).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .test_outside6_common import data_project, run_with_config

pytestmark = pytest.mark.timeout(300)


def test_a_strict_kernel_leaves_no_trace_of_a_moderate_early_sandbox(tmp_path: Path) -> None:
    project, audit = data_project(tmp_path)
    scoped = {"SandboxKernelApp": {"SandboxKernel": {"level": "strict", "audit_log": str(audit)}}}
    said = run_with_config(tmp_path, project, scoped)
    levels = {json.loads(line).get("security_level") for line in audit.read_text().splitlines() if line.strip()}
    assert levels == {"strict"} and "data.csv" not in said, (levels, said)  # the kernel itself is right
    assert sorted(p.name for p in project.iterdir()) == ["data.csv"], (
        f"a STRICT kernel (parent-scoped config) changed the project folder: {sorted(os.listdir(project))} "
        "-- its early sandbox was started at the kernelspec's MODERATE first"
    )
