"""The VM image's stamp covers every file of the package the image holds (scripts/build-vm-image).

The root image carries a copy of the whole ``glsandbox_kernel`` (every ``*.py``
and ``py.typed``); the guest may import any of it (``project.py`` and
``_lazy.py`` through ``config``, any module a pickled call names by
reference). The host refuses an image whose copy differs from its own package
(``backends/vm/image.py``: ``source_hash``, which the build script runs on its
staged copy), so an edit of any of those files must change the hash. Judged on
a copy of the package, each file edited in turn, in a child interpreter that
imports that copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import glsandbox_kernel

PACKAGE = Path(glsandbox_kernel.__file__).resolve().parent

CHILD = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from glsandbox_kernel.backends.vm import image
top = Path(sys.argv[1]) / "glsandbox_kernel"
assert Path(image.__file__).resolve().is_relative_to(top.resolve()), image.__file__
base = image.source_hash()
unchanged = []
for path in sorted(p for p in top.rglob("*") if p.is_file() and (p.suffix == ".py" or p.name == "py.typed")):
    text = path.read_bytes()
    path.write_bytes(text + b"\n# edited\n")
    image.source_hash.cache_clear()
    if image.source_hash() == base:
        unchanged.append(str(path.relative_to(top)))
    path.write_bytes(text)
image.source_hash.cache_clear()
assert image.source_hash() == base
print(json.dumps(unchanged))
"""


def test_an_edit_of_any_file_the_image_holds_changes_its_stamp(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "glsandbox_kernel", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run(
        [sys.executable, "-B", "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    unchanged = json.loads(out.stdout)
    assert unchanged == [], f"the image's stamp misses {len(unchanged)} file(s) it holds: {unchanged[:12]}"
