"""The ``%%sandbox`` notice that /tmp cannot be a project folder is shown once per shell (outside review).

A stock ipykernel started in /tmp (papermill's and many launchers' working folder): the first
sandboxed cell says why the sandbox shows no host folder. ``%reload_ext glsandbox_kernel`` (or
unload and load) made a new magic with its own memory of what it had said, so the notice came
again. Real kernel over ZMQ, real sandbox.
"""

from __future__ import annotations

import pytest

from ..jupyter_fixtures import Kernel

pytestmark = [pytest.mark.timeout(300)]

NOTICE = "glsandbox: the sandbox shows no host folder"


def _texts(messages: list[dict]) -> list[str]:
    out = []
    for m in messages:
        content = m.get("content") or {}
        if m.get("msg_type") == "display_data":
            out.append(str((content.get("data") or {}).get("text/plain")))
        elif m.get("msg_type") == "stream":
            out.append(str(content.get("text")))
    return out


def test_the_tmp_notice_comes_once_per_shell_across_reloads() -> None:
    k = Kernel("python3", cwd="/tmp")
    try:
        shown: list[str] = []
        cells = (
            "%load_ext glsandbox_kernel",
            "%%sandbox\nprint(1)",
            "%%sandbox --name other\nprint(2)",
            "%reload_ext glsandbox_kernel",
            "%%sandbox\nprint(3)",
            "%unload_ext glsandbox_kernel",
            "%load_ext glsandbox_kernel",
            "%%sandbox\nprint(4)",
        )
        for code in cells:
            reply, messages = k.execute(code, timeout=120)
            assert reply["status"] == "ok", (code, reply)
            shown += _texts(messages)
        assert "4\n" in shown, shown
        assert sum(NOTICE in t for t in shown) == 1, [t for t in shown if NOTICE in t]
    finally:
        k.shutdown()
