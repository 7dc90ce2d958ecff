"""Optional modules another thread may be importing (both sides of the trust boundary).

Who calls: the codec (:mod:`.codec_hashes`, :mod:`.codec_arrays`), which looks at numpy and
pandas only when something already imported them. ``sys.modules`` holds a module from the
moment its import starts, so a plain lookup can return numpy half initialised while the
kernel's idle pre-import (or a user thread in the worker) is still importing it: CI saw the
host refuse an honest frame with ``partially initialized module 'numpy' has no attribute
'ndarray'`` and kill the worker.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def loaded_module(name: str) -> ModuleType | None:
    """The module ``name`` once fully imported, None when nothing imported it.

    An import under way in another thread is waited for (``import_module`` takes that
    module's import lock); in the importing thread itself the partial module comes back,
    as a plain ``import`` gives it.
    """
    module = sys.modules.get(name)
    if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False):
        module = importlib.import_module(name)
    return module
