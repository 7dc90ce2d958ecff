"""Outside review (6th): a LENIENT ``glsandbox run`` writes its notebook through a symlink the sandbox planted.

Attack: at LENIENT the project folder (the notebook's folder) is writable
by the sandbox. A cell plants a symlink where the trusted host will write
afterwards: ``os.symlink("/home/ana/.bashrc", "nb.glsandbox.ipynb")``
(``default_output``: beside the notebook). When the run ends,
``notebook/run.py:run_cli`` does ``open(out, "w")`` and ``nbformat.write``,
which follows the link: the host process truncates and rewrites a file the
sandbox could neither see nor write (its HOME, ``~/.ssh/authorized_keys``,
the run's signing key, ``~/.config/...``; as root with a project folder
owned by a user, any file on the machine), with content the sandbox chose
in part (its outputs). ``glsandbox report`` (``evidence.html`` beside the
notebook) and ``glsandbox attest`` write the same way.

Measured here (root, namespace, project folder owned by uid 65534): the
file outside the project was replaced by the executed notebook's JSON.

Judged from the host: a file outside every folder the sandbox sees keeps
its content after the run.

Fix (suggested): ``notebook/run.py`` (and report/attest): write the output
with ``O_NOFOLLOW`` to a temporary file in the same folder and
``os.replace`` it over the destination (which replaces a link, never
follows it), or refuse an output path that is a symlink; the same for every
file the host writes into a folder the sandbox can write.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import glsandbox_cli as _glsandbox
from .test_outside5_common import folders, need, write_notebook

pytestmark = pytest.mark.timeout(300)

ORIGINAL = "export PATH=$HOME/bin:$PATH  # the user's own file, outside the project\n"


def test_the_run_output_is_not_written_through_a_sandbox_symlink(tmp_path: Path) -> None:
    need("namespace")
    project, outside = folders(tmp_path)
    victim = outside / ".bashrc"
    victim.write_text(ORIGINAL)
    out = project / "nb.glsandbox.ipynb"
    src = project / "nb.ipynb"
    write_notebook(src, f"import os\nos.symlink({str(victim)!r}, 'nb.glsandbox.ipynb')\nprint('$(id > /tmp/pwned)')")
    res = _glsandbox("run", str(src), "--level", "lenient", "--isolation", "namespace")
    planted = out.is_symlink()
    assert victim.read_text() == ORIGINAL, (
        f"the host wrote its notebook through the sandbox's symlink (planted: {planted}, run rc "
        f"{res.returncode}): {victim} now starts {victim.read_text()[:120]!r}"
    )
