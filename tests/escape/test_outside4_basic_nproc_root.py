"""Outside review (5th): BASIC on a root host accepts ``max_processes`` and does not enforce it.

Attack: STRICT on ``isolation_type=BASIC`` with ``max_processes=8``, host
running as root (as here). BASIC's only process limit is ``RLIMIT_NPROC``,
which the kernel never applies to uid 0, and BASIC has no cgroup. The cell
forks 24 children that stay alive; every fork succeeds. The module
docstring of ``backends/basic.py`` names this a "known gap", but the config
is still accepted and the audit record carries ``max_processes=8``.

Judged from the host: either the backend refuses the config
(BackendUnavailableError / SandboxConfigError), or the number of live
descendants of the worker, counted from the host with psutil while the cell
holds them, stays within the limit.

Fixed: BASIC puts the sandbox in a cgroup of its own wherever the host can
make one (``backends/basic.py``), whose ``pids.max`` the kernel applies at
fork to uid 0 too; the session's outside task guard (which samples) is left
only for a root host that cannot make a cgroup.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import psutil
import pytest

from glsandbox_kernel import IsolationType, OSSandbox, create_config_by_level
from glsandbox_kernel.confinement import cgroups
from glsandbox_kernel.exceptions import BackendUnavailableError, SandboxConfigError

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="RLIMIT_NPROC holds for a non-root host uid"),
    pytest.mark.timeout(120),
]

LIMIT = 8
CELL = f"""
import os, time
kids = []
for _ in range({3 * LIMIT}):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(4)
        os._exit(0)
    kids.append(pid)
print("held", len(kids), flush=True)
time.sleep(1)
for k in kids:
    os.waitpid(k, 0)
"""


def test_basic_enforces_or_refuses_max_processes_as_root() -> None:
    cfg = create_config_by_level("strict", isolation_type=IsolationType.BASIC)
    cfg = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, max_processes=LIMIT))
    try:
        sandbox = OSSandbox(cfg)
        sandbox.__enter__()
    except (BackendUnavailableError, SandboxConfigError):
        # Refused: what the charter asks for where nothing holds the limit; a host that
        # can make a cgroup must enforce it instead.
        assert not cgroups.available()[0], "BASIC refused max_processes although a cgroup can be made here"
        return
    counted: list[int] = []

    def on_output(msg: dict[str, Any]) -> None:
        if "held" in str(msg.get("text", "")) and not counted:
            tree = 0
            for pid in sandbox.worker_pids:
                try:
                    tree += len(psutil.Process(pid).children(recursive=True))
                except psutil.NoSuchProcess:
                    pass
            counted.append(tree)

    try:
        result = sandbox.run_cell(CELL, on_output=on_output)
    finally:
        sandbox.__exit__(None, None, None)
    assert result.status == "ok", result
    assert counted, "the cell never said how many children it held"
    assert counted[0] <= LIMIT, f"max_processes={LIMIT} accepted, host counted {counted[0]} live descendants"
