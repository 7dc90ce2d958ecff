"""Outside review (3rd): script-bearing bundles reach the frontend in execute_reply ``user_expressions``.

Attack: the frontend asks for ``user_expressions`` (JupyterLab extensions,
Voila-like dashboards and debugger panels do; any client may) and the
sandboxed worker answers with a MIME bundle it chose: ``text/html`` with an
``onerror=`` handler and ``<script>``, ``application/javascript``. The
kernel cleans output frames, pager payloads, inspect replies and widget
state (``active_content.clean_bundle``), but ``kernel.py:_execute_blocking``
passes ``result.user_expressions`` through ``as_dict`` only: the bundles
arrive unchanged in the execute_reply on the shell channel. Measured over
ZMQ with a real glsandbox kernel: both bundles arrived as the sandbox made them.

Judged from the host, at the protocol level: no bundle of the reply's
``user_expressions`` carries a script MIME type or active HTML.

Fix (suggested): ``kernel/kernel.py`` (reply building): run each
``user_expressions`` value's ``data`` through ``clean_bundle`` (noting it).
"""

from __future__ import annotations

import json
import queue
import re

import pytest

from ..jupyter_fixtures import Kernel, glsandbox_kernelspec
from .test_outside_active_outputs import ipykernel, kernel

__all__ = ["glsandbox_kernelspec", "ipykernel", "kernel"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.timeout(180)

ACTIVE = re.compile(r"<script|\bon[a-z]+\s*=|javascript:", re.IGNORECASE)


def test_user_expressions_reach_the_frontend_without_scripts(kernel: Kernel) -> None:
    cell = (
        "from IPython.display import HTML, Javascript\n"
        "page = HTML('<img src=x onerror=\"fetch(`/api/terminals`,{method:`POST`})\"><script>alert(1)</script>')\n"
        'code = Javascript(\'fetch("/api/kernels", {method: "POST"})\')\n'
    )
    reply, _ = kernel.execute(cell, timeout=60, user_expressions={"page": "page", "code": "code"})
    assert reply["status"] == "ok", reply
    found = {}
    for name, value in reply["user_expressions"].items():
        data = value.get("data") or {}
        hits = [m for m in data if "javascript" in m.lower()]
        hits += [
            f"{m}: {ACTIVE.search(v).group(0)}" for m, v in data.items() if isinstance(v, str) and ACTIVE.search(v)
        ]
        if hits:
            found[name] = hits
    assert not found, f"script-bearing user_expressions relayed: {found}; reply {json.dumps(reply)[:400]}"


def test_a_sandboxed_cell_cannot_rewrite_a_host_cells_display(ipykernel: Kernel) -> None:
    """``%%sandbox`` republishes the sandbox's ``update_display_data`` with the display id it chose.

    A host cell (trusted code, outside any sandbox) shows its result with
    ``display(..., display_id="result")``; a later sandboxed cell sends
    ``update_display(..., display_id="result")`` and the frontend replaces
    the host cell's output with the sandbox's text (``magics/display.py:
    show_output``). Judged from the host: no update_display_data of the
    sandboxed cell names a display the sandbox did not create.
    Fix (suggested): ``magics/display.py``: keep the display ids the sandbox
    created in this session (prefix or map them) and drop updates of others.
    """
    reply, _ = ipykernel.execute("display('host total: 42', display_id='result')")
    assert reply["status"] == "ok", reply
    cell = "%%sandbox strict\nfrom IPython.display import update_display\nupdate_display('host total: 0', display_id='result')"
    reply, outputs = ipykernel.execute(cell, timeout=60)
    assert reply["status"] == "ok", reply
    hijack = [
        m["content"]
        for m in outputs
        if m["msg_type"] == "update_display_data" and m["content"].get("transient", {}).get("display_id") == "result"
    ]
    assert not hijack, f"the sandbox rewrote the host cell's display 'result': {hijack}"


def test_a_sandbox_comm_open_carries_no_target_module(kernel: Kernel) -> None:
    """A sandbox ``comm_open`` keeps its ``target_module``: the classic Notebook loads it with requirejs.

    ``widget_refusal`` checks ``target_name`` and the widget modules in the
    state, but ``comm_content`` keeps every other key of the content. The
    classic Notebook / nbclassic frontend (``CommManager.comm_open`` ->
    ``utils.load_class(target_name, target_module)``) calls
    ``requirejs([target_module])`` whenever the target is not registered
    (no widgets extension enabled): a script URL the sandbox chose, run in
    the server's origin. Judged from the host, at the protocol level: no
    relayed comm_open names a ``target_module``.
    Fix (suggested): ``kernel/relay.py:comm_content``: rebuild the content from
    the known keys (comm_id, target_name, data) and drop ``target_module``.
    """
    cell = (
        "from comm import create_comm\n"
        "c = create_comm(target_name='jupyter.widget', target_module='https://127.0.0.1:9/x.js', data={'state': "
        "{'_model_name': 'HTMLModel', '_model_module': '@jupyter-widgets/controls', 'value': 'hi'}, 'buffer_paths': []})"
    )
    reply, outputs = kernel.execute(cell, timeout=60)
    assert reply["status"] == "ok", reply
    opened = [m["content"] for m in outputs if m["msg_type"] == "comm_open"]
    assert opened, "the sandbox's comm_open was not relayed at all"
    modules = [c["target_module"] for c in opened if c.get("target_module")]
    assert not modules, f"a sandbox comm_open reached the frontend with target_module {modules}"


AUDIT_MIME = "application/vnd.glsandbox.audit+json"


def test_an_input_prompt_with_a_lone_surrogate_leaves_the_cell_audited(kernel: Kernel) -> None:
    """``input('\\ud800')`` in a cell: the prompt goes out unescaped and the cell loses its audit record.

    ``kernel/options.py:relay_input`` sends ``str(prompt)`` as the
    ``input_request``; jupyter_client cannot encode a lone surrogate, the
    exception leaves ``sandbox.run_cell`` mid-request, and the kernel answers
    with a bare UnicodeEncodeError: the cell has no audit output (the README:
    "no content a cell produces can stop its record from being written"), and
    the next cell waited ~30 s for the abandoned worker request. Judged from
    the host: the cell's IOPub messages hold its audit output.
    Fix (suggested): ``kernel/options.py``: ``safe_text(prompt)`` as every other
    sandbox string; ``sandbox.py:run_cell``: seal and emit the record when a
    callback (on_input/on_output) raises.
    """
    cell = "try:\n    input('\\ud800 prompt: ')\nexcept BaseException as exc:\n    print(type(exc).__name__)\n"
    msg_id = kernel.kc.execute(cell, allow_stdin=True)
    try:
        request = kernel.kc.get_stdin_msg(timeout=60)  # the frontend gets the prompt, escaped, and answers
    except queue.Empty:  # what the cell did instead (CI once got no prompt): its outputs and reply say
        outputs = kernel.collect(msg_id, timeout=60)
        shown = [(m["msg_type"], str(m["content"])[:200]) for m in outputs if m["msg_type"] != "execute_input"]
        raise AssertionError(f"no input_request in 60 s; the cell's outputs {shown}") from None
    assert request["msg_type"] == "input_request" and "prompt:" in request["content"]["prompt"], request
    kernel.kc.input("answer")
    outputs = kernel.collect(msg_id, timeout=60)
    reply = kernel.shell_reply(msg_id, timeout=60)["content"]
    audited = [m for m in outputs if AUDIT_MIME in (m["content"].get("data") or {})]
    shown = [(m["msg_type"], str(m["content"])[:160]) for m in outputs if m["msg_type"] != "execute_input"]
    assert audited, f"the cell has no audit output; reply {reply.get('status')} {reply.get('ename')}; outputs {shown}"
