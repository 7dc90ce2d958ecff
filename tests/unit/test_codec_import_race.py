"""The codec looks at numpy only once its import has finished (host side; the worker likewise).

CI (fresh clone, full suite) twice got a kernel cell refused as "malformed value:
AttributeError: partially initialized module 'numpy' has no attribute 'ndarray'" and its worker
killed: the codec took numpy from ``sys.modules`` while another thread (the kernel's idle
pre-import) was still importing it. Here a real import of numpy is held half-way by a finder
that waits before numpy's first submodule, and the codec's hash check runs meanwhile in another
thread, in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys, threading, time
    started = threading.Event()

    class Hold(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.startswith("numpy.") and not started.is_set():
                started.set()
                time.sleep(1.0)  # numpy is in sys.modules, half initialised, for a second
            return None

    sys.meta_path.insert(0, Hold())
    from glsandbox_kernel import codec_hashes
    importer = threading.Thread(target=lambda: __import__("numpy"))
    importer.start()
    assert started.wait(30), "numpy's import never started"
    assert "numpy" in sys.modules and not hasattr(sys.modules["numpy"], "ndarray")
    codec_hashes.check(list(range(100)), "dict key", 8)  # the host's check of a decoded frame
    importer.join()
    print("ok")
    """
)


def test_the_codec_waits_for_a_numpy_import_under_way() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
