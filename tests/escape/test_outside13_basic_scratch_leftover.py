"""Outside review (14th): an unprivileged BASIC cell leaves its files in the host's /tmp after close.

Severity: medium (host leftovers, unbounded host disk use that outlives the session; the
documented promise is "no leftovers: private files removed" and "swept by the next host").

Without root, BASIC's private work folder is a plain ``mkdtemp`` folder in the host's
temporary folder (``backends/scratch.py``), owned by the same uid as the sandbox, and its
quota is per file only. ``hosttemp.remove`` (on close, and the later sweep) is
``shutil.rmtree(path, ignore_errors=True)``. A cell can ``chmod 0`` a sub-folder of its work
folder (its own file, Landlock allows it): ``rmtree`` cannot list or empty it, the error is
ignored, and the folder, the sub-folder and whatever the cell wrote in it stay on the host.
Every later sweep fails the same way, so each call can leave up to its per-file quota times the
files it writes, forever.

Attack (as uid 65534, a real BASIC sandbox): write ``keep/data`` in the work folder,
``os.chmod("keep", 0)``, return; the host closes the sandbox.

What the host saw: the ``glsandbox-w...`` folder and ``keep/data`` are still there after
``close()`` and after a later host process's ``hosttemp.sweep()`` (its creator gone).

Expected: close (and the sweep) remove the folder whatever modes the cell set: restore the
owner's ``u+rwx`` on each folder ``rmtree`` cannot enter (its ``onexc``/``onerror`` hook, or
a ``chmod`` walk before the removal), since every entry is the host user's own.
"""

from __future__ import annotations

import os

import pytest

from .test_outside13_common import nobody_tmp, run_as_nobody

pytestmark = pytest.mark.timeout(300)

SCRIPT = r"""
import glob, os, sys
from glsandbox_kernel import OSSandbox, create_config_by_level
from glsandbox_kernel.config import IsolationType

def plant():
    import os
    os.makedirs("keep", exist_ok=True)
    with open("keep/data", "wb") as fh:
        fh.write(b"x" * 65536)
    os.chmod("keep", 0)
    return os.getcwd()

config = create_config_by_level("strict", isolation_type=IsolationType.BASIC, fallback_to_basic=False)
box = OSSandbox(config)
try:
    print("CWD", box.execute(plant))
finally:
    box.close()
"""

SWEEP = "from glsandbox_kernel.hosttemp import sweep; print('SWEPT', sweep())"


def test_unprivileged_basic_work_folder_is_removed_whatever_its_modes() -> None:
    with nobody_tmp("rev14-basic-") as tmp:
        proc = run_as_nobody(SCRIPT, tmp=tmp)
        assert "CWD" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
        # a later host process (its creator gone) sweeps the temporary folder, as documented
        swept = run_as_nobody(SWEEP, tmp=tmp, timeout=120)
        assert "SWEPT" in swept.stdout, swept.stdout[-3000:] + swept.stderr[-3000:]
        left = [name for name in os.listdir(tmp) if name.startswith("glsandbox-w")]
        held = [os.path.join(dp, f) for name in left for dp, _, fs in os.walk(os.path.join(tmp, name)) for f in fs]
        assert not left, f"the cell's work folder outlived close and the sweep: {left}, files {held}"
