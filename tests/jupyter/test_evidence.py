"""Notebooks as audit evidence: canonical outputs, verification and every kind of tampering,
``glsandbox run`` over the demo notebooks, the HTML report and the pre-save hook.

Real sandboxes and real kernels throughout: the synthetic notebooks are built
from ``OSSandbox.run_cell`` results exactly as the kernel emits them, and
``glsandbox run`` runs the demo notebooks through nbclient and the glsandbox
kernel.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from glsandbox_kernel import OSSandbox, create_config_by_level
from glsandbox_kernel.notebook.evidence import (
    AUDIT_MIME,
    AuditTrail,
    canonical_outputs,
    outputs_evidence,
    process_stream_text,
    role_metadata,
    streams_as_shown,
)
from glsandbox_kernel.notebook.presave import pre_save_hook
from glsandbox_kernel.notebook.run import inject_parameters, parse_params, write_evidence_metadata
from glsandbox_kernel.notebook.verify import verify_notebook

from ..conftest import ROOT, glsandbox_cli

KEY = b"test-key-0123456789abcdef"


def outputs_hash(outputs: list[dict[str, Any]]) -> str:
    return str(outputs_evidence(outputs)["outputs_hash"])


# -- canonical outputs ------------------------------------------------------------------------------


def test_streams_merge_and_join_lines() -> None:
    saved = [
        {"output_type": "stream", "name": "stdout", "text": ["a\n", "b\n"]},
        {"output_type": "stream", "name": "stdout", "text": "c"},
        {"output_type": "stream", "name": "stderr", "text": "e\n"},
    ]
    live = [
        {"output_type": "stream", "name": "stdout", "text": "a\nb\nc"},
        {"output_type": "stream", "name": "stderr", "text": "e\n"},
    ]
    assert canonical_outputs(saved) == canonical_outputs(live)
    assert outputs_hash(saved) == outputs_hash(live)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("abc\rX", "Xbc"),
        ("10%\r20%\r100%\n", "100%\n"),
        ("ab\bc\n", "ac\n"),
        ("line\nnext\r\n", "line\nnext\n"),
        ("plain text\n", "plain text\n"),
    ],
)
def test_carriage_returns_as_jupyterlab_stores_them(raw: str, shown: str) -> None:
    assert process_stream_text(raw) == shown
    assert process_stream_text(shown) == shown  # idempotent: processed text hashes the same
    assert outputs_hash([{"output_type": "stream", "name": "stdout", "text": raw}]) == outputs_hash(
        [{"output_type": "stream", "name": "stdout", "text": shown}]
    )


@pytest.mark.parametrize(("raw", "hidden"), [("a\r\nb\r\n", False), ("a\nb\n", False), ("ab\rc\r\n", True)])
def test_only_text_a_terminal_hides_is_hidden(raw: str, hidden: bool) -> None:
    """A CRLF line end hides nothing (review 21: verify warned of hidden text for ``\\r\\n``)."""
    assert streams_as_shown([{"output_type": "stream", "name": "stdout", "text": raw}])[1] is hidden


def test_metadata_copy_edited_under_its_record_hash(synthetic: Any) -> None:
    """Review 21: every field of the copy is compared, types too (``1.0`` is not ``1``)."""
    nb = copy.deepcopy(synthetic)
    write_evidence_metadata(nb, None)
    for name in ("security_level", "timestamp", "seq"):
        tampered = copy.deepcopy(nb)
        record = tampered.cells[0].metadata["glsandbox"]["record"]
        record[name] = float(record[name]) if name == "seq" else "x" if name == "security_level" else 1.0
        _only(_problems(tampered), "cell 1 (In [1])", "copy of record disagrees")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400, json.loads("[" * 300 + "]" * 300)])
def test_values_no_canonical_json_holds_are_named_not_a_crash(synthetic: Any, value: Any) -> None:
    """NaN, an int beyond a double, 300 levels (``json`` reads them all): in a record, a problem;
    where nothing covers them, a warning that ``--strict`` fails on (the encoder refused them)."""
    nb = json.loads(json.dumps(synthetic))
    audit = next(o for o in nb["cells"][0]["outputs"] if AUDIT_MIME in o.get("data", {}))
    audit["data"][AUDIT_MIME]["record"]["seq"] = value
    _only(_problems(nb), "cell 1 (In [1])")
    nb = json.loads(json.dumps(synthetic))
    nb["cells"][0]["metadata"]["x"] = value
    loose = verify_notebook(nb)
    assert loose.ok and any("cells[0].metadata.x" in w for w in loose.warnings), loose.warnings
    assert not verify_notebook(nb, strict=True).ok


def test_no_output_excludes_itself_from_the_hash() -> None:
    """A role claim, a widget view or an audit-looking output is hashed like any other output."""
    plain = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    for claim in (
        {"output_type": "display_data", "data": {"text/plain": "x"}, "metadata": role_metadata("notice")},
        {"output_type": "display_data", "data": {"application/vnd.jupyter.widget-view+json": {}}, "metadata": {}},
        {"output_type": "display_data", "data": {AUDIT_MIME: {}, "text/plain": "a"}, "metadata": {}},
    ):
        assert outputs_hash([*plain, claim]) != outputs_hash(plain)
    # kernel-made outputs separate streams, as in every frontend
    marked = {"output_type": "display_data", "data": {"text/plain": "m"}, "metadata": {}, "_mark": True}
    outs = [plain[0], marked, {"output_type": "stream", "name": "stdout", "text": "\r3\n"}]
    assert [o["output_type"] for o in canonical_outputs(outs)] == ["stream", "display_data", "stream"]
    assert [e["origin"] for e in outputs_evidence(outs)["outputs"]] == ["sandbox", "kernel", "sandbox"]


def test_data_and_metadata_are_covered_transient_and_counts_are_not() -> None:
    a = [
        {
            "output_type": "execute_result",
            "execution_count": 3,
            "metadata": {"x": 1.0},
            "transient": {"display_id": "d"},
            "data": {"text/plain": ["1\n", "2"], "image/png": "iVBOR\nw0KG\n", "application/json": {"b": 1, "a": 2}},
        }
    ]
    b = [
        {
            "output_type": "execute_result",
            "execution_count": 9,
            "metadata": {"x": 1},
            "data": {"text/plain": "1\n2", "image/png": "iVBORw0KG", "application/json": {"a": 2, "b": 1}},
        }
    ]
    assert outputs_hash(a) == outputs_hash(b)
    b[0]["metadata"] = {"x": 2}
    assert outputs_hash(a) != outputs_hash(b)


# -- synthetic notebooks: OSSandbox results as the kernel emits them --------------------------------


SOURCES = [
    "x = 6 * 7\nprint('x is', x)",
    "import sys\nprint('to stderr', file=sys.stderr)\nx + 1",
    "from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))\nprint('after')",
    "for i in range(3):\n    print(i)",
]


def _to_nbformat(out: dict[str, Any], count: int) -> Any:
    out = {k: v for k, v in out.items() if not k.startswith("_")}
    if out["output_type"] == "execute_result":
        out["execution_count"] = count
    return nbformat.from_dict(out)


def build_notebook(sources: list[str], *, key_path: str | None = None, level: str = "moderate") -> Any:
    """Run ``sources`` in one sandbox session and save them as the kernel would."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    trail = AuditTrail()
    with OSSandbox(create_config_by_level(level, audit_key_path=key_path)) as box:
        for count, source in enumerate(sources, start=1):
            result = box.run_cell(source)
            cell = nbformat.v4.new_code_cell(source)
            cell.execution_count = count
            cell.outputs = [_to_nbformat(o, count) for o in result.outputs]
            assert result.audit_record is not None
            data, metadata = trail.bundle(box, result.audit_record, execution_count=count)
            cell.outputs.append(nbformat.v4.new_output("display_data", data=data, metadata=metadata))
            nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


@pytest.fixture(scope="module")
def synthetic() -> Any:
    return build_notebook(SOURCES)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    key_file = tmp_path_factory.mktemp("key") / "audit.key"
    key_file.write_bytes(KEY + b"\n")
    nb = build_notebook(SOURCES[:2], key_path=str(key_file))
    write_evidence_metadata(nb, KEY)
    return nb


def _problems(nb: Any, key: bytes | None = None) -> list[str]:
    result = verify_notebook(nb, key)
    assert result.ok == (not result.problems)
    return result.problems


def _only(problems: list[str], *words: str) -> None:
    assert problems, "tampering was not detected"
    joined = "\n".join(problems)
    for word in words:
        assert word in joined, joined


def test_untouched_notebook_verifies(synthetic: Any) -> None:
    result = verify_notebook(synthetic)
    assert result.ok, result.problems
    assert result.records == 5  # session_start + 4 cells
    assert [c.outputs_ok for c in result.cells] == [True] * 4
    # survives a save/load round trip (lines split, JSON re-encoded)
    again = nbformat.reads(nbformat.writes(synthetic), as_version=4)
    assert verify_notebook(again).ok


def test_edited_source_is_named_with_cell_and_count(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    nb.cells[1].source = nb.cells[1].source.replace("x + 1", "x + 2")
    _only(_problems(nb), "cell 2 (In [2])", "source edited")


def test_edited_output(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    nb.cells[0].outputs[0].text = "x is 41\n"
    _only(_problems(nb), "cell 1 (In [1])", "output 1 edited")


def test_removed_output(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    del nb.cells[2].outputs[0]  # the HTML display
    _only(_problems(nb), "cell 3 (In [3])", "output 1 removed")


def test_added_output(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    nb.cells[3].outputs.insert(0, nbformat.v4.new_output("stream", name="stdout", text="forged\n"))
    # merges with the cell's own stdout: the stream reads differently
    _only(_problems(nb), "cell 4 (In [4])", "edited")


def test_deleted_cell(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    del nb.cells[1]
    _only(_problems(nb), "missing between cell 1 (In [1])", "deleted")


def test_deleted_first_cell(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    del nb.cells[0]
    _only(_problems(nb), "missing before it", "deleted")


def test_inserted_cell_without_record(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    forged = nbformat.v4.new_code_cell("print('not run in the sandbox')")
    forged.execution_count = 9
    forged.outputs = [nbformat.v4.new_output("stream", name="stdout", text="not run in the sandbox\n")]
    nb.cells.insert(2, forged)
    _only(_problems(nb), "cell 3 (In [9])", "no audit record")


def test_inserted_unexecuted_cell(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    nb.cells.insert(1, nbformat.v4.new_code_cell("import os; os.system('rm -rf /')"))
    _only(_problems(nb), "cell 2", "not run in the sandbox")


def test_copied_cell(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    nb.cells.insert(2, copy.deepcopy(nb.cells[1]))
    _only(_problems(nb), "same audit record")


def test_reordered_cells(synthetic: Any) -> None:
    """Without a seal, moved cells look like out-of-order execution: a warning, a problem with --strict."""
    nb = copy.deepcopy(synthetic)
    nb.cells[1], nb.cells[2] = nb.cells[2], nb.cells[1]
    result = verify_notebook(nb)
    assert result.ok, result.problems
    assert any("out of order" in w for w in result.warnings)
    assert (
        "actual order of execution: cell 1 (In [1]), cell 3 (In [2]), cell 2 (In [3]), cell 4 (In [4])"
        in result.warnings
    )
    _only(verify_notebook(nb, strict=True).problems, "not one clean top-to-bottom run")
    write_evidence_metadata(nb := copy.deepcopy(synthetic), None)
    nb.cells[1], nb.cells[2] = nb.cells[2], nb.cells[1]
    _only(_problems(nb), "changed after the notebook was sealed")


def test_tampered_record(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    record = nb.cells[0].outputs[-1].data[AUDIT_MIME]["record"]
    record["security_level"] = "strict"  # claim stronger controls than were in force
    _only(_problems(nb), "cell 1 (In [1])", "tampered")


def test_tampered_and_rehashed_record_breaks_the_chain(synthetic: Any) -> None:
    from glsandbox_kernel.audit import compute_record_hash

    nb = copy.deepcopy(synthetic)
    record = nb.cells[1].outputs[-1].data[AUDIT_MIME]["record"]
    record["violations"] = []
    record["execution_time"] = 0.001
    record["record_hash"] = compute_record_hash(record)
    _only(_problems(nb), "cell 3 (In [3])", "does not chain")


def test_removed_audit_output_with_metadata_copy(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    write_evidence_metadata(nb, None)
    nb.cells[2].outputs = nb.cells[2].outputs[:-1]
    problems = _problems(nb)
    _only(problems, "cell 3 (In [3])", "audit output was removed")
    assert not any("missing between" in p for p in problems)  # the chain is whole thanks to the copy


def test_metadata_copy_disagrees(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    write_evidence_metadata(nb, None)
    nb.cells[0].metadata["glsandbox"]["record"] = copy.deepcopy(nb.cells[1].metadata["glsandbox"]["record"])
    _only(_problems(nb), "cell 1 (In [1])", "disagrees")


def test_trailing_cell_deleted_is_seen_through_notebook_metadata(synthetic: Any) -> None:
    nb = copy.deepcopy(synthetic)
    write_evidence_metadata(nb, None)
    assert verify_notebook(nb).ok
    del nb.cells[-1]
    _only(_problems(nb), "last cell(s) were deleted")


def test_signed_notebook_with_the_right_key(signed: Any) -> None:
    result = verify_notebook(signed, KEY)
    assert result.ok, result.problems
    assert all(c.signature_ok for c in result.cells)
    assert signed.metadata["glsandbox"]["seal"]["signature"]


def test_signed_notebook_with_a_wrong_key(signed: Any) -> None:
    _only(_problems(signed, b"another key"), "bad signature")


def test_signed_notebook_without_a_key_is_ok_with_a_note(signed: Any) -> None:
    result = verify_notebook(signed)
    assert result.ok
    assert any("no key" in n for n in result.notes)


def test_unsigned_notebook_with_a_key_fails(synthetic: Any) -> None:
    _only(_problems(synthetic, KEY), "not signed")


def test_forged_rehashed_chain_fails_with_a_key(signed: Any) -> None:
    """Rewriting and re-hashing every record passes without a key, never with one."""
    from glsandbox_kernel.audit import compute_record_hash

    nb = copy.deepcopy(signed)
    prev = None
    for cell in nb.cells:
        payload = cell.outputs[-1].data[AUDIT_MIME]
        cell.metadata.pop("glsandbox", None)
        for rec in [*payload["preceding"], payload["record"]]:
            rec["security_level"] = "strict"
            if prev is not None:
                rec["prev_hash"] = prev
            rec.pop("signature", None)
            rec["record_hash"] = compute_record_hash(rec)
            prev = rec["record_hash"]
    # a thorough forger re-derives the visible audit line too
    from glsandbox_kernel.notebook.evidence import audit_bundle

    for cell in nb.cells:
        payload = cell.outputs[-1].data[AUDIT_MIME]
        data, _meta = audit_bundle(payload["record"], payload["preceding"], execution_count=cell.execution_count)
        cell.outputs[-1].data = data
    nb.metadata.pop("glsandbox")
    assert verify_notebook(nb).ok  # undetectable without a key (documented)
    _only(_problems(nb, KEY), "not signed")


# -- cli: glsandbox audit verify ---------------------------------------------------------------------


def test_audit_verify_cli(synthetic: Any, tmp_path: Any) -> None:
    good = tmp_path / "good.ipynb"
    nbformat.write(synthetic, str(good))
    ok = _glsandbox("audit", "verify", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK:")
    nb = copy.deepcopy(synthetic)
    nb.cells[3].source += "\n# edited"
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, str(bad))
    res = _glsandbox("audit", "verify", str(bad))
    assert res.returncode == 1
    assert "FAILED" in res.stdout and "cell 4 (In [4]): source edited" in res.stdout
    missing = _glsandbox("audit", "verify", str(tmp_path / "nope.ipynb"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_audit_verify_cli_key_from_file_and_env(signed: Any, tmp_path: Any) -> None:
    path = tmp_path / "signed.ipynb"
    nbformat.write(signed, str(path))
    key_file = tmp_path / "k"
    key_file.write_bytes(KEY)
    assert _glsandbox("audit", "verify", str(path), "--key", str(key_file)).returncode == 0
    assert _glsandbox("audit", "verify", str(path), env={"GLSANDBOX_AUDIT_KEY": KEY.decode()}).returncode == 0
    wrong = _glsandbox("audit", "verify", str(path), env={"GLSANDBOX_AUDIT_KEY": "nope"})
    assert wrong.returncode == 1 and "bad signature" in wrong.stdout


# -- parameters -----------------------------------------------------------------------------------------


def test_parameters_are_injected_after_the_tagged_cell() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(n)"),
    ]
    assert inject_parameters(nb, parse_params(["n=5", "name=site A", "xs=[1, 2]"])) == 2
    assert nb.cells[2].source.splitlines()[1:] == ["n = 5", "name = 'site A'", "xs = [1, 2]"]
    assert inject_parameters(nb, {"n": 6}) == 2  # a re-run replaces the injected cell
    assert len(nb.cells) == 4
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_params(["1x=2"])


# -- pre-save hook ---------------------------------------------------------------------------------------


def test_pre_save_hook_copies_records(synthetic: Any) -> None:
    content = json.loads(nbformat.writes(synthetic))
    model = {"type": "notebook", "content": content}
    pre_save_hook(model=model, path="x.ipynb", contents_manager=None)
    for cell in content["cells"]:
        copy_ = cell["metadata"]["glsandbox"]
        assert copy_["record"]["record_hash"] == cell["outputs"][-1]["data"][AUDIT_MIME]["record"]["record_hash"]
        assert copy_["hashes_match"] is True
    assert content["metadata"]["glsandbox"]["sessions"][0]["count"] == 5
    nb = nbformat.from_dict(content)
    nbformat.validate(nb)
    assert verify_notebook(nb).ok
    pre_save_hook(model={"type": "file", "content": "x"}, path="x.txt")  # other files: untouched


def test_server_config_enables_the_extension() -> None:
    """config.d files only load server extensions: ours registers the hook (see test_presave_server)."""
    with open(os.path.join(ROOT, "jupyter-config", "jupyter_server_config.d", "glsandbox.json")) as fh:
        config = json.load(fh)
    extensions = config["ServerApp"]["jpserver_extensions"]
    assert extensions == {"glsandbox_kernel.notebook.presave": True}
    import importlib

    module = importlib.import_module("glsandbox_kernel.notebook.presave")
    assert module._jupyter_server_extension_points() == [{"module": "glsandbox_kernel.notebook.presave"}]


def test_pre_save_hook_in_a_contents_manager(synthetic: Any, tmp_path: Any) -> None:
    """The hook as the Jupyter server runs it (FileContentsManager with the config's import string)."""
    from jupyter_server.services.contents.filemanager import FileContentsManager

    manager = FileContentsManager(
        root_dir=str(tmp_path), pre_save_hook="glsandbox_kernel.notebook.presave.pre_save_hook"
    )
    model = {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(synthetic))}
    manager.save(model, "saved.ipynb")
    saved = nbformat.read(str(tmp_path / "saved.ipynb"), as_version=4)
    assert all("glsandbox" in c.metadata for c in saved.cells)
    assert verify_notebook(saved).ok


# -- glsandbox run over the demo notebooks ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, subprocess.CompletedProcess[str], str]]:
    out = str(tmp_path_factory.mktemp("run") / "emissions.ipynb")
    key_file = tmp_path_factory.mktemp("key") / "k"
    key_file.write_bytes(KEY)
    res = _glsandbox(
        "run",
        os.path.join(ROOT, "notebooks", "emissions_demo.ipynb"),
        "-o",
        out,
        "--key",
        str(key_file),
        "--timeout",
        "120",
    )
    nb = nbformat.read(out, as_version=4) if os.path.exists(out) else None
    yield nb, res, out


def test_glsandbox_run_writes_outputs_and_metadata(demo_run: Any) -> None:
    nb, res, _out = demo_run
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[1/" in res.stdout and "ok" in res.stdout  # progress per cell
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs[-1].data[AUDIT_MIME]["record"]["extra"]["kind"] == "cell"
        assert cell.metadata["glsandbox"]["hashes_match"] is True
        assert "execution" not in cell.metadata or "glsandbox" not in cell.metadata["execution"]
    meta = nb.metadata["glsandbox"]
    assert meta["environment"]["python"] and meta["environment"]["glsandbox"]
    assert meta["seal"]["signature"] and meta["run"]["completed"] is True
    assert meta["config"]["level"] == "moderate"
    result = verify_notebook(nb, KEY)
    assert result.ok, result.problems


def test_glsandbox_run_then_tamper_and_verify(demo_run: Any, tmp_path: Any) -> None:
    nb, _res, out = demo_run
    key_file = tmp_path / "k"
    key_file.write_bytes(KEY)
    assert _glsandbox("audit", "verify", out, "--key", str(key_file)).returncode == 0
    edited = copy.deepcopy(nb)
    table = next(c for c in edited.cells if c.cell_type == "code" and "pivot_table" in c.source)
    result = next(o for o in table.outputs if o.output_type == "execute_result")
    result.data["text/html"] = result.data["text/html"].replace("Scope 1", "Scope 9")
    path = tmp_path / "edited.ipynb"
    nbformat.write(edited, str(path))
    res = _glsandbox("audit", "verify", str(path), "--key", str(key_file))
    assert res.returncode == 1 and "edited" in res.stdout


def test_report_has_table_and_verification(demo_run: Any, tmp_path: Any) -> None:
    _nb, _res, out = demo_run
    html_path = tmp_path / "evidence.html"
    res = _glsandbox("report", out, "-o", str(html_path), env={"GLSANDBOX_AUDIT_KEY": KEY.decode()})
    assert res.returncode == 0, res.stdout + res.stderr
    page = html_path.read_text()
    assert 'id="glsandbox-verification"' in page and "Verification: OK" in page
    assert 'id="glsandbox-cells"' in page and "peak memory" in page
    assert "Total Q1 emissions" in page  # the notebook itself
    assert "data:image/png;base64" in page  # charts (the notebook's figure at least)


def test_report_of_a_tampered_notebook_says_failed(synthetic: Any, tmp_path: Any) -> None:
    from glsandbox_kernel.notebook.report import build_report

    nb = copy.deepcopy(synthetic)
    nb.cells[0].source = "x = 0"
    page, result = build_report(nb, title="t")
    assert not result.ok
    assert "Verification: FAILED" in page and "source edited" in page


def test_glsandbox_run_stops_at_a_failing_cell(tmp_path: Any) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "glsandbox", "display_name": "Python 3 (sandboxed)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('n =', n)"),
        nbformat.v4.new_code_cell("1 / 0"),
        nbformat.v4.new_code_cell("print('after')"),
    ]
    src = tmp_path / "p.ipynb"
    nbformat.write(nb, str(src))
    out = tmp_path / "p.out.ipynb"
    res = _glsandbox("run", str(src), "-o", str(out), "--param", "n=7")
    assert res.returncode == 1
    assert "ZeroDivisionError" in res.stdout and "stopped" in res.stdout
    done = nbformat.read(str(out), as_version=4)
    nbformat.validate(done)
    assert "n = 7" in done.cells[2].outputs[0].text
    assert not done.cells[4].outputs  # not executed after the failure
    result = verify_notebook(done)
    assert result.ok, result.problems  # the evidence of what ran still holds
    assert any("stopped early" in n for n in result.notes)


def test_magic_notebook_evidence(tmp_path: Any) -> None:
    """The magic demo in the stock python3 kernel: its %%sandbox cells carry verifiable records."""
    from nbclient import NotebookClient

    nb = nbformat.read(os.path.join(ROOT, "notebooks", "magic_demo.ipynb"), as_version=4)
    NotebookClient(
        nb, timeout=120, startup_timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    result = verify_notebook(nb)
    assert result.ok, result.problems
    assert any("outside any sandbox" in n for n in result.notes)
    magic = [c for c in result.cells if c.record is not None]
    assert magic and all(c.source_ok and c.outputs_ok for c in magic)
    # the magic line is covered by the record (extra.magic_line, review 16): its level and every option
    for old, new in (("%%sandbox strict", "%%sandbox lenient"), ("--out totals", "--out totals --network any")):
        edited = copy.deepcopy(nb)
        cell = next(c for c in edited.cells if c.source.startswith("%%sandbox strict"))
        cell.source = cell.source.replace(old, new, 1)
        _only(_problems(edited), "its %%sandbox line was edited after it ran", new)
    # and the body through its hash
    edited = copy.deepcopy(nb)
    cell = next(c for c in edited.cells if c.source.startswith("%%sandbox strict"))
    cell.source += "\n# edited"
    _only(_problems(edited), "source edited")


def _glsandbox(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return glsandbox_cli(*args, env=env, timeout=timeout, audit_key=True)
