"""Every tamper class of issue 12 against a real ``glsandbox run`` output, with HMAC, Ed25519 and no key.

Each notebook is executed once per key mode by ``glsandbox run`` through
nbclient and the glsandbox kernel (real sandbox, real monitor: one cell runs
long enough for the kernel's monitor summary, one cell shows an output whose
metadata claims a kernel role). Each test then tampers with a copy the way
the issue describes and checks that ``glsandbox audit verify`` (the CLI, on
the written file) fails and says what was done. Without a key the same
naive tampering is detected, and verify says plainly what it cannot prove.
"""

from __future__ import annotations

import copy
import stat
import subprocess
from collections.abc import Callable
from typing import Any

import nbformat
import pytest

from glsandbox_kernel.notebook.evidence import AUDIT_MIME, WIDGET_MIME, role_metadata

from ..conftest import glsandbox_cli as _glsandbox

pytestmark = pytest.mark.timeout(600)

HMAC_KEY = b"tamper-test-hmac-key-0123456789"

CELLS = [
    ("markdown", "# Emissions\nA markdown cell the seal covers."),
    ("code", "x = 6 * 7\nprint('x is', x)"),
    (
        "code",
        "from IPython.display import display\n"
        "display({'text/plain': 'sandbox output claiming a kernel role'}, raw=True,\n"
        "        metadata={'glsandbox': {'role': 'notice'}})\n"
        "x + 1",
    ),
    ("code", "import time\ntime.sleep(0.8)\nprint('slow cell done')"),
    (
        "code",
        "import os\n"
        "print('key in env:', any('KEY' in k and 'GLSANDBOX' in k for k in os.environ))\n"
        "try:\n"
        "    open(keyfile).read()\n"
        "    print('key file readable: True')\n"
        "except OSError:\n"
        "    print('key file readable: False')",
    ),
    ("code", "print('last cell')"),
]


@pytest.fixture(scope="module", params=["hmac", "ed25519", "nokey"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    mode = request.param
    base = tmp_path_factory.mktemp(f"tamper-{mode}")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    for kind, source in CELLS:
        nb.cells.append(
            nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        )
    src = base / "n.ipynb"
    nbformat.write(nb, str(src))
    out = base / "n.out.ipynb"
    run_args: list[str] = []
    verify_args: list[str] = []
    if mode == "hmac":
        key = base / "hmac.key"
        key.write_bytes(HMAC_KEY)
        run_args = ["--key", str(key)]
        verify_args = ["--key", str(key)]
    elif mode == "ed25519":
        private = base / "signing.key"
        made = _glsandbox("keygen", str(private))
        assert made.returncode == 0, made.stderr
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        run_args = ["--sign-key", str(private)]
        verify_args = ["--pubkey", str(private) + ".pub"]  # the auditor holds only the public key
    if not run_args:  # no key: a key file the run does not use, beside the notebook like the others
        (base / "unused.key").write_bytes(HMAC_KEY)
    keyfile = run_args[1] if run_args else str(base / "unused.key")
    res = _glsandbox("run", str(src), "-o", str(out), *run_args, "--param", f"keyfile={keyfile!r}")
    assert res.returncode == 0, res.stdout + res.stderr
    done = nbformat.read(str(out), as_version=4)
    ok = _glsandbox("audit", "verify", str(out), *verify_args)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    return {"mode": mode, "nb": done, "verify_args": verify_args, "dir": base}


def _tampered(run: dict[str, Any], edit: Callable[[Any], None], name: str) -> subprocess.CompletedProcess[str]:
    nb = copy.deepcopy(run["nb"])
    edit(nb)
    path = run["dir"] / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    res = _glsandbox("audit", "verify", str(path), *run["verify_args"])
    assert res.returncode == 1, f"{name} was not detected ({run['mode']}):\n{res.stdout}{res.stderr}"
    assert "Traceback" not in res.stderr
    if run["mode"] == "nokey":
        assert "no key given" in res.stdout and "re-hash" in res.stdout  # what cannot be proven, plainly
    return res


def _code(nb: Any) -> list[Any]:
    """The notebook's own code cells (not the injected parameters cell)."""
    return [c for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def test_the_untampered_run_lists_every_output_with_its_origin(run: dict[str, Any]) -> None:
    cells = _code(run["nb"])
    # the sandbox's role-claiming output is recorded as a sandbox output, not skipped, and loses the
    # kernel's role (a kernel notice says so)
    extra = cells[1].outputs[-1].data[AUDIT_MIME]["record"]["extra"]
    origins = [e["origin"] for e in extra["outputs"]]
    assert origins == ["sandbox", "sandbox", "kernel"], extra["outputs"]
    assert "glsandbox" not in cells[1].outputs[0].metadata, cells[1].outputs[0]
    # the slow cell's monitor summary is kernel-made, and the record says so
    slow = cells[2].outputs[-1].data[AUDIT_MIME]["record"]["extra"]["outputs"]
    assert "kernel" in [e["origin"] for e in slow], slow
    assert len(slow) == len(cells[2].outputs) - 1


def test_inserted_output_claiming_a_kernel_role(run: dict[str, Any]) -> None:
    def edit(nb: Any) -> None:
        cell = _code(nb)[0]
        forged = nbformat.v4.new_output(
            "display_data", data={"text/plain": "all clear"}, metadata=role_metadata("notice")
        )
        cell.outputs.insert(len(cell.outputs) - 1, forged)

    res = _tampered(run, edit, "role")
    assert "output 2 added" in res.stdout


def test_inserted_widget_view_output(run: dict[str, Any]) -> None:
    def edit(nb: Any) -> None:
        cell = _code(nb)[1]
        view = nbformat.v4.new_output(
            "display_data", data={WIDGET_MIME: {"model_id": "f" * 32, "version_major": 2, "version_minor": 0}}
        )
        cell.outputs.insert(0, view)

    res = _tampered(run, edit, "widget")
    assert "output 1 added" in res.stdout


def test_rewritten_audit_line(run: dict[str, Any]) -> None:
    fake = "glsandbox audit: cell 3 · strict/gvisor · ok · 0.01 s · CPU 0.00 s · peak 9 MiB · 0 violations · record 0"

    def edit(nb: Any) -> None:
        audit = _code(nb)[2].outputs[-1]
        audit.data["text/plain"] = fake
        audit.data["text/html"] = f"<div>{fake}</div>"

    res = _tampered(run, edit, "line")
    assert "visible audit line was rewritten" in res.stdout


def test_inserted_whitespace_only_cell_with_a_fake_result(run: dict[str, Any]) -> None:
    def edit(nb: Any) -> None:
        cell = nbformat.v4.new_code_cell("   \n")
        cell.execution_count = 3
        cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=3)]
        nb.cells.insert(3, cell)

    res = _tampered(run, edit, "blank")
    assert "no audit record" in res.stdout


def test_last_cell_deleted_with_the_notebook_metadata(run: dict[str, Any]) -> None:
    def edit(nb: Any) -> None:
        del nb.cells[-1]
        nb.metadata.pop("glsandbox")

    res = _tampered(run, edit, "truncated")
    assert "notebook-level glsandbox metadata" in res.stdout and "removed" in res.stdout


def test_kernelspec_changed(run: dict[str, Any]) -> None:
    def edit(nb: Any) -> None:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}

    res = _tampered(run, edit, "kernelspec")
    assert "kernelspec changed" in res.stdout


def test_markdown_cell_edited(run: dict[str, Any]) -> None:
    index = next(i for i, c in enumerate(run["nb"].cells) if c.cell_type == "markdown")

    def edit(nb: Any) -> None:
        nb.cells[index].source = "# Emissions (audited by nobody)"

    res = _tampered(run, edit, "markdown")
    assert f"cell {index + 1} (not executed): source changed" in res.stdout


def test_the_wrong_key_fails(run: dict[str, Any]) -> None:
    """Another Ed25519 public key, another HMAC secret, or any key for an unsigned notebook."""
    out = str(run["dir"] / "n.out.ipynb")
    if run["mode"] == "ed25519":
        other = run["dir"] / "other.key"
        assert _glsandbox("keygen", str(other)).returncode == 0
        res = _glsandbox("audit", "verify", out, "--pubkey", str(other) + ".pub")
        assert res.returncode == 1 and "another key pair" in res.stdout
    elif run["mode"] == "hmac":
        res = _glsandbox("audit", "verify", out, env={"GLSANDBOX_AUDIT_KEY": "another secret"})
        assert res.returncode == 1 and "bad signature" in res.stdout
    else:
        res = _glsandbox("audit", "verify", out, env={"GLSANDBOX_AUDIT_KEY": "any secret"})
        assert res.returncode == 1 and "not signed" in res.stdout


def test_the_signing_key_is_not_visible_in_the_sandbox(run: dict[str, Any]) -> None:
    """The key reached the kernel process (records are signed), never the sandboxed cell."""
    cells = _code(run["nb"])
    shown = "".join(o.get("text", "") for o in cells[3].outputs if o.output_type == "stream")
    assert "key in env: False" in shown, shown
    assert "key file readable: False" in shown, shown
    if run["mode"] != "nokey":
        assert cells[3].outputs[-1].data[AUDIT_MIME]["record"]["signature"]


def test_a_worker_frame_cannot_claim_to_be_kernel_made() -> None:
    """The host-only ``_mark`` flag is dropped from whatever the worker sends."""
    from glsandbox_kernel.notebook.evidence import outputs_evidence
    from glsandbox_kernel.outputs import OutputCollector

    collector = OutputCollector(None, None, None)
    collector.handle({"type": "display_data", "data": {"text/plain": "x"}, "metadata": {}, "_mark": True})
    collector.mark({"output_type": "display_data", "data": {"text/plain": "k"}, "metadata": {}}, None)
    assert [e["origin"] for e in outputs_evidence(collector.outputs)["outputs"]] == ["sandbox", "kernel"]
