"""Outside review (9th): the magic's guard misses a writable project the host imports through a meta-path finder.

Attack: ``magics/host_path.py`` (guard_project, drop_writable_from_path) only
looks at ``sys.path`` and the working directory. ``pip install -e .`` with
setuptools >= 64 (its default, "strict"-less lenient mode) writes no path line
into a ``.pth``: it installs ``__editable___<name>_finder``, a ``sys.meta_path``
finder whose ``MAPPING`` sends ``import mypkg`` to ``<checkout>/mypkg``.
So an analyst whose notebook lives elsewhere and who runs ``%%sandbox lenient
--project ~/mypkg-checkout`` gets that checkout writable, unguarded; the cell
rewrites ``mypkg/__init__.py`` and the host kernel's next ``import mypkg``
runs it outside every control.

The test installs in the host kernel exactly the finder setuptools' editable
wheel installs (a ``MAPPING`` of the package name to the checkout's package
folder on ``sys.meta_path``), as its ``.pth`` import line does at start.

Measured here (root, namespace): ``planted True``; the host ``import mypkg``
wrote the marker in a host-only folder.

Judged from the host: after the LENIENT cell, the host kernel's ``import
mypkg`` does not run what the cell wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..conftest import NOBODY
from .test_outside5_common import folders, need
from .test_outside8_common import magic_kernel, plant

pytestmark = pytest.mark.timeout(300)

#: what setuptools' __editable___mypkg_finder.install() puts on sys.meta_path (reduced to its MAPPING lookup)
FINDER = """
import importlib.util, sys
MAPPING = {{"mypkg": {pkg!r}}}
class _EditableFinder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname in MAPPING:
            return importlib.util.spec_from_file_location(
                fullname, MAPPING[fullname] + "/__init__.py", submodule_search_locations=[MAPPING[fullname]])
        return None
sys.meta_path.append(_EditableFinder)
print("finder installed")
"""

PAYLOAD = "import os\nopen({marker!r}, 'w').write('uid %d imported the planted package' % os.getuid())\nVALUE = 2\n"


def test_a_lenient_magic_cell_cannot_rewrite_an_editable_package_the_host_imports(tmp_path: Path) -> None:
    need("namespace")
    project, outside = folders(tmp_path, "checkout")
    pkg = project / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 1\n")
    if os.geteuid() == 0:  # the checkout is the analyst's, written by the sandbox as its owner
        for p in (pkg, pkg / "__init__.py"):
            os.chown(p, NOBODY, NOBODY)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    marker = outside / "imported-by-host"
    payload = PAYLOAD.format(marker=str(marker))
    finder, said, imported = magic_kernel(
        notebooks,
        FINDER.format(pkg=str(pkg)),
        plant(project, "mypkg/__init__.py", payload),
        "import mypkg\nprint('VALUE', mypkg.VALUE)",
    )
    assert "finder installed" in finder, finder
    assert not marker.exists(), (
        f"the host kernel imported the package a LENIENT %%sandbox cell rewrote in its --project checkout "
        f"(an editable install's finder): {marker.read_text()!r} ({said.strip()!r}, {imported.strip()!r})"
    )
