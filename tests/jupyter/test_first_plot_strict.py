"""An analyst's first matplotlib plot at STRICT, on every backend, through the library and a real kernel.

matplotlib builds its font cache on its first import and asks ``fc-list`` for fontconfig's fonts;
STRICT starts no program, so each try was an exec violation that stopped the cell (enforcing mode;
on BASIC the worker was even killed and its state lost). The worker now refuses that one call
before forking (``worker/fontprobe.py``), matplotlib scans the font folders instead: the plot is
made and shown, no violation is recorded, and an exec the cell itself tries still is.
"""

from __future__ import annotations

import re

import pytest

from glsandbox_kernel import IsolationType, OSSandbox, WhitelistConfig, create_config_by_level
from glsandbox_kernel.backends.registry import backends

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, kernel_made

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest

PLOT = """\
import os
import matplotlib.pyplot as plt
plt.plot([1, 2])
path = os.path.join(os.environ['TMPDIR'], 'first.png')
plt.savefig(path)
print(os.path.getsize(path) > 1000)
"""

BACKENDS = ["basic", "namespace", "container", "gvisor"]


def _need(name: str) -> None:
    ok, why = backends()[name].available()
    if not ok:
        pytest.skip(f"{name}: {why}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_plot_at_strict_records_no_violation(backend: str) -> None:
    _need(backend)
    config = create_config_by_level("strict", isolation_type=IsolationType(backend))
    with OSSandbox(config) as box:
        result = box.run_cell(PLOT + "plt.show()")
        assert result.status == "ok", (result.error_name, result.error_value)
        assert result.violations == []
        assert result.audit_record is not None and result.audit_record["violations"] == []
        stdout = "".join(o.get("text", "") for o in result.outputs if o.get("output_type") == "stream")
        assert stdout == "True\n"
        assert any(
            "image/png" in (o.get("data") or {}) for o in result.outputs if o.get("output_type") == "display_data"
        )
        # what the cell tries itself is still denied and recorded (STRICT: no new programs)
        denied = box.run_cell("import subprocess\nsubprocess.run(['fc-list'])")
        assert denied.status == "error"
        assert [v["kind"] for v in denied.violations][:1] == ["exec"]


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_a_refused_program_is_not_called_an_escape(backend: str) -> None:
    """A program the cell starts at STRICT stops the cell; the error says what was refused and how to allow
    it, not "violation blocked" (the words of an attack): most such starts are a library's probe."""
    _need(backend)
    config = create_config_by_level("strict", isolation_type=IsolationType(backend))
    with OSSandbox(config) as box:
        result = box.run_cell("import subprocess\nsubprocess.run(['fc-list'])")
        assert result.status == "error" and result.error_name == "SandboxViolationError"
        assert result.error_value.startswith("this sandbox starts no new programs: execve("), result.error_value
        assert "fc-list" in result.error_value and "not an escape attempt" in result.error_value
        assert "whitelist.allowed_executables" in result.error_value
        assert all(v["kind"] == "exec" and v["escape"] is False for v in result.violations)
        escape = box.run_cell("import os\nos.execv('/usr/bin/nsenter', ['nsenter'])")  # an escape tool: as before
        assert escape.error_name == "SandboxEscapeError", (escape.error_name, escape.error_value)


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_first_plot_shown_inline_by_the_strict_kernel(glsandbox_kernelspec: str, backend: str) -> None:
    _need(backend)
    k = Kernel("glsandbox-strict", extra_arguments=[f"--SandboxKernel.isolation={backend}"])
    try:
        reply, outputs = k.execute(PLOT, timeout=120)
        assert reply["status"] == "ok", reply
        shown = [m for m in outputs if not kernel_made(m)]
        assert [m["content"]["text"] for m in shown if m["msg_type"] == "stream"] == ["True\n"]
        assert any(m["msg_type"] == "display_data" and "image/png" in m["content"]["data"] for m in shown), shown
        banners = [m for m in outputs if "glsandbox-violations" in str(m["content"])]
        assert banners == []
        reply, _ = k.execute("print(plt.gcf() is not None)")  # the worker (and its state) survived
        assert reply["status"] == "ok"
    finally:
        k.shutdown()


@pytest.mark.parametrize("backend", ["basic", "namespace"])
def test_a_stop_deep_in_a_library_keeps_the_worker(backend: str) -> None:
    """A stop raised deep inside a big library's import shows the cell's frames only, so the worker answers
    within the grace and keeps its state. Before, IPython formatted every matplotlib frame (stack_data
    parses each module): on BASIC the 2 s grace ran out, the worker was killed and its state lost.
    The font probe is switched off here (``whitelist.env``), so matplotlib's fc-list is tried again."""
    _need(backend)
    config = create_config_by_level("strict", isolation_type=IsolationType(backend))
    config = config.replace(whitelist=WhitelistConfig(env={"GLSANDBOX_NEW_PROGRAMS": "allowed"}))
    with OSSandbox(config) as box:
        assert box.run_cell("kept = 'yes'").status == "ok"
        result = box.run_cell("import matplotlib.pyplot")
        assert result.status == "error" and result.enforcement == "stopped", result.error_value
        errors = [o for o in result.outputs if o.get("output_type") == "error" and o["ename"] == "SandboxStopped"]
        assert len(errors) == 1, result.outputs
        text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors[0]["traceback"]))
        frames = [line for line in text.splitlines() if line.startswith(("Cell In[", "File "))]
        assert frames == ["Cell In[2], line 1"], text
        kept = box.run_cell("print(kept)")
        assert [o.get("text") for o in kept.outputs] == ["yes\n"]
