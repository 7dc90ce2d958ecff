"""``glsandbox run NOTEBOOK``: execute a notebook through the sandbox kernel, as evidence (host side).

Who calls: the ``glsandbox`` CLI (:func:`add_run_parser` registers the
subcommand) and tests (:func:`run_notebook`). The notebook runs with nbclient
against a ``glsandbox`` kernel described by a kernelspec written to a private
temporary directory, carrying the options asked for (``--SandboxKernel.level=...``; without ``--level``
the kernel's config file decides, else moderate); every cell runs in the sandbox, never in this process.

What it writes (the notebook still passes ``nbformat.validate``):

- the cells' outputs, each code cell ending with its audit output;
- ``cell.metadata["glsandbox"]``: a second copy of the cell's audit record and
  the records before it, its hashes and status;
- ``notebook.metadata["glsandbox"]``: the session(s) with their chain head and
  record count, the
  configuration, environment versions, and how the run went;
- the notebook seal (:mod:`.seal`) over every cell, the kernelspec and this
  metadata, signed with ``--key`` (HMAC) or ``--sign-key`` (Ed25519), as is
  every record (the key reaches the kernel process, never the sandbox);
- parameters (``--param K=V``) as an injected cell after the cell tagged
  ``parameters`` (papermill's convention), or first.

Nothing is written under ``metadata.execution``. Exit status: 0 all cells ran
without error or violation and the evidence verifies; 1 a cell failed, a
violation was recorded or verification failed (with a summary); 2 usage
errors (unreadable notebook, kernel did not start).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import hosttemp
from ..audit.log import KEY_FILE_ENV
from ..cli_options import (
    add_notebook_command,
    add_project_options,
    add_sandbox_options,
    beside_notebook,
    project_kernel_argv,
)
from ..host_files import pin_folder, replace_file
from ..safe_python import module_argv
from ..terminal_text import printable
from .cell_source import magic_notebook_note
from .checks import kernelspec_level_warning
from .evidence import find_audit_output, fmt_bytes, fmt_seconds, record_status
from .metadata import collect_records, write_evidence_metadata
from .sealed_run import mark_kernel_env
from .verify import verify_notebook

INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"


# -- parameters ---------------------------------------------------------------------------------


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["n=3", "name=x"]`` to ``{"n": 3, "name": "x"}`` (Python literals, else strings)."""
    params: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"--param expects NAME=VALUE with a Python identifier as NAME, got {item!r}")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        params[name] = value
    return params


def inject_parameters(nb: Any, params: Mapping[str, Any]) -> int | None:
    """Insert (or replace) the injected-parameters cell; returns its index, None without params."""
    import nbformat

    cells = nb.cells
    for i in range(len(cells) - 1, -1, -1):
        if INJECTED_TAG in (cells[i].get("metadata", {}).get("tags") or []):
            del cells[i]
    if not params:
        return None
    lines = ["# Parameters (injected by glsandbox run)"] + [f"{k} = {v!r}" for k, v in params.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines) + "\n", metadata={"tags": [INJECTED_TAG]})
    where = 0
    for i, existing in enumerate(cells):
        if PARAMETERS_TAG in (existing.get("metadata", {}).get("tags") or []):
            where = i + 1
            break
    cells.insert(where, cell)
    return where


# -- the kernel -----------------------------------------------------------------------------------


def kernel_argv(args: argparse.Namespace) -> list[str]:
    """The kernelspec argv carrying the sandbox options as traitlets options."""
    argv = [
        *module_argv(sys.executable, "glsandbox_kernel.kernel"),
        "-f",
        "{connection_file}",
    ]
    if getattr(args, "level", None):  # else the kernel's config file (glsandbox_kernel_config), else moderate
        argv.append(f"--SandboxKernel.level={args.level}")
    if getattr(args, "isolation", None):
        argv.append(f"--SandboxKernel.isolation={args.isolation}")
    if getattr(args, "fallback", False):
        argv.append("--SandboxKernel.fallback_to_basic=True")
    if getattr(args, "timeout", None) is not None:
        argv.append(f"--SandboxKernel.timeout={float(args.timeout)}")
    if getattr(args, "memory", None):
        argv.append(f"--SandboxKernel.memory={args.memory}")
    if getattr(args, "no_monitor", False):
        argv.append("--SandboxKernel.monitor=False")
    if getattr(args, "audit", None):
        argv.append(f"--SandboxKernel.audit_log={os.path.abspath(args.audit)}")
    return argv + project_kernel_argv(args)


def _write_kernelspec(directory: str, name: str, argv: list[str], level: str | None) -> None:
    spec_dir = os.path.join(directory, name)
    os.makedirs(spec_dir, exist_ok=True)
    spec = {
        "argv": argv,
        "display_name": f"Python 3 (sandboxed, {level or 'configured level'}, glsandbox run)",
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }
    with open(os.path.join(spec_dir, "kernel.json"), "w", encoding="utf-8") as fh:
        json.dump(spec, fh, indent=1)


# -- metadata -----------------------------------------------------------------------------------------


# -- running ---------------------------------------------------------------------------------------------


class RunSummary:
    """How a run went: per cell status, failures, violations (printed at the end)."""

    def __init__(self) -> None:
        self.cells: list[dict[str, Any]] = []
        self.failed: dict[str, Any] | None = None
        self.violations = 0
        self.completed = True
        self.error: str | None = None

    def as_metadata(self, started: float, finished: float) -> dict[str, Any]:
        return {
            "started": started,
            "finished": finished,
            "completed": self.completed,
            "cells_run": len(self.cells),
            "failed_cell": self.failed["index"] if self.failed else None,
            "violations": self.violations,
        }


def run_notebook(
    nb: Any,
    args: argparse.Namespace,
    *,
    key: bytes | None = None,
    progress: Callable[[str], None] | None = None,
    cwd: str | None = None,
) -> RunSummary:
    """Execute ``nb`` in place through a glsandbox kernel; fill the evidence metadata.

    Stops at the first failing cell (like papermill) unless ``args.allow_errors``.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    say = progress or (lambda line: None)
    summary = RunSummary()
    params = parse_params(list(getattr(args, "param", None) or []))
    inject_parameters(nb, params)
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    spec_dir = hosttemp.private_dir("run")
    name = "glsandbox-run"
    try:
        os.chmod(spec_dir, 0o700)
        _write_kernelspec(spec_dir, name, kernel_argv(args), args.level)
        ksm = KernelSpecManager(kernel_dirs=[spec_dir])
        # IPC sockets in the private runtime dir: nothing listens on the network.
        km = KernelManager(kernel_name=name, kernel_spec_manager=ksm, transport="ipc", ip=os.path.join(spec_dir, "ipc"))
        timeout = getattr(args, "timeout", None)
        client = NotebookClient(
            nb,
            km=km,
            timeout=(float(timeout) + 60.0) if timeout else None,
            startup_timeout=120,
            allow_errors=True,
            kernel_name=name,
            resources={"metadata": {"path": cwd or os.getcwd()}},
        )
        env = dict(os.environ)
        if key is not None:  # in a file of the private 0700 folder: a binary key cannot travel as a variable
            key_file = os.path.join(spec_dir, "audit.key")
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
            env[KEY_FILE_ENV] = key_file
        mark_kernel_env(env)  # the session's signed first record says this notebook gets sealed
        with client.setup_kernel(env=env, cleanup_kc=True):
            # as NotebookClient.execute does: the notebook names its language (sealed, as a frontend saves it)
            info = client.wait_for_reply(client.kc.kernel_info())  # type: ignore[union-attr]
            if info is not None and isinstance(info["content"].get("language_info"), dict):
                nb.metadata["language_info"] = info["content"]["language_info"]
            # the kernel that really ran it (sealed with the rest): a notebook written for "python3" must
            # not claim that kernel for records of the sandbox kernel; with --level, neither may a glsandbox
            # one naming another level ("glsandbox-strict" sealed over lenient records); else it is kept
            spec = nb.metadata.get("kernelspec")
            if args.level or not (isinstance(spec, dict) and str(spec.get("name", "")).startswith("glsandbox")):
                from ..kernel.install import default_name, display_name_for

                nb.metadata["kernelspec"] = {
                    "name": default_name(args.level),
                    "display_name": display_name_for(args.level),  # as installed: JupyterLab keeps it
                    "language": "python",
                }
            for n, index in enumerate(code_cells, start=1):
                cell = nb.cells[index]
                t0 = time.monotonic()
                error: str | None = None
                try:
                    client.execute_cell(cell, index)
                except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
                    error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
                info = _cell_info(cell, index, time.monotonic() - t0, error)
                summary.cells.append(info)
                summary.violations += info["violations"]
                say(_progress_line(n, len(code_cells), info))
                if info["failed"] and summary.failed is None:
                    summary.failed = info
                if info["failed"] and not getattr(args, "allow_errors", False):
                    summary.completed = n == len(code_cells)
                    break
        # without --level the kernel's config gave the level: a kept "glsandbox-strict" must not claim another
        used = levels_used(nb)
        if len(used) == 1 and kernelspec_level_warning(nb, set(used)):
            from ..kernel.install import default_name, display_name_for

            kept = {"name": default_name(used[0]), "display_name": display_name_for(used[0]), "language": "python"}
            nb.metadata["kernelspec"] = kept
    finally:
        hosttemp.remove(spec_dir)  # whatever modes a sandbox left in it
    return summary


def _cell_info(cell: Any, index: int, seconds: float, error: str | None) -> dict[str, Any]:
    found = find_audit_output(cell.get("outputs") or [])
    record = found[1].get("record") if found else None
    errors = [o for o in cell.get("outputs") or [] if o.get("output_type") == "error"]
    if isinstance(record, Mapping):
        status = record_status(record)
        metrics = record.get("metrics") if isinstance(record.get("metrics"), Mapping) else {}
        assert isinstance(metrics, Mapping)
        violations = len(record.get("violations") or [])
        peak = metrics.get("memory_peak_bytes")
        wall = record.get("execution_time")
    else:
        status = "error" if (errors or error) else "no record"
        violations, peak, wall = 0, None, seconds
    if errors and status == "ok":
        status = "error"
    first_error = errors[0] if errors else None
    message = error
    if first_error is not None:
        message = f"{first_error.get('ename')}: {first_error.get('evalue')}"
    return {
        "index": index,
        "execution_count": cell.get("execution_count"),
        "status": status,
        "violations": violations,
        "peak": peak,
        "wall": wall,
        "error": message,
        "failed": bool(errors or error),
    }


def _progress_line(n: int, total: int, info: dict[str, Any]) -> str:
    mark = "ok" if info["status"] == "ok" else info["status"].upper()
    line = (
        f"[{n}/{total}] cell {info['index'] + 1}: {mark} in {fmt_seconds(info['wall'])} (peak {fmt_bytes(info['peak'])}"
    )
    if info["violations"]:
        line += f", {info['violations']} violation(s)"
    line += ")"
    if info.get("error") and info["failed"]:
        line += f" — {info['error'][:200]}"
    return line


# -- CLI -----------------------------------------------------------------------------------------------


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``glsandbox run`` (called by :func:`glsandbox_kernel.cli.build_parser`)."""
    p = add_notebook_command(
        subparsers,
        "run",
        run_cli,
        help="execute a notebook in the sandbox kernel and record the audit evidence",
        description="Execute NOTEBOOK with nbclient through the glsandbox kernel; write the executed notebook "
        "with per-cell audit records (outputs and cell metadata) and the session's chain head.",
        output_help="where to write the executed notebook (default: NOTEBOOK with .glsandbox.ipynb)",
    )
    add_sandbox_options(p, timeout_help="wall-clock limit per cell, seconds", level_default=None)
    p.add_argument("--memory", default=None, help="memory limit, e.g. 512M")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="parameter injected after the cell tagged 'parameters' (repeatable)",
    )
    p.add_argument(
        "--key",
        metavar="FILE",
        help="HMAC key file: sign records and the notebook seal (default: $GLSANDBOX_AUDIT_KEY)",
    )
    p.add_argument(
        "--sign-key", metavar="PRIVATE", help="Ed25519 private key (glsandbox keygen): sign records and the seal"
    )
    p.add_argument("--no-monitor", action="store_true", help="no monitor summaries/charts in the outputs")
    p.add_argument("--allow-errors", action="store_true", help="keep running after a failing cell")
    p.add_argument("--audit", metavar="PATH", help="also append the audit records to this JSONL file")
    p.add_argument("--cwd", metavar="DIR", help="working directory of the kernel (default: the notebook's)")
    add_project_options(p)
    return p  # glsandbox_kernel.notebook.cluster.add_run_parser adds --cluster on top


def seal_run(
    nb: Any,
    args: argparse.Namespace,
    summary: RunSummary,
    *,
    key: bytes | None,
    started: float,
    finished: float,
    **config: Any,
) -> None:
    """Write the run's evidence metadata (its options, how it went, ``config`` extras) and validate ``nb``.

    Called by :func:`run_cli` and, on a cluster worker, by :mod:`.cluster` (host side).
    """
    import nbformat

    options = {
        "level": args.level or ",".join(levels_used(nb)) or None,  # not asked: what the kernel's config gave
        "isolation": args.isolation,
        "timeout": args.timeout,
        "memory": args.memory,
        "params": {k: repr(v) for k, v in parse_params(list(args.param or [])).items()},
        "monitor": not args.no_monitor,
        **config,
    }
    write_evidence_metadata(nb, key, run=summary.as_metadata(started, finished), config=options)
    nbformat.validate(nb)


def levels_used(nb: Any) -> list[str]:
    """The security levels the notebook's audit records say its cells ran at (what the kernel reports)."""
    return sorted({str(r["security_level"]) for r in collect_records(nb) if r.get("security_level")})


def read_notebook(path: str) -> Any | None:
    """``path`` as a v4 notebook, or None after printing why it cannot be (the caller exits 2).

    Called by :func:`run_cli` and :mod:`.cluster` (host side).
    """
    import nbformat

    try:
        with open(path, encoding="utf-8") as fh:
            return nbformat.read(fh, as_version=4)
    except OSError as exc:
        print(f"glsandbox run: error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds for a bad file
        print(f"glsandbox run: error: {path} is not a notebook: {exc}", file=sys.stderr)
    return None


def default_output(path: str) -> str:
    """Where ``glsandbox run NB.ipynb`` writes the executed notebook without ``-o``."""
    return beside_notebook(path, ".glsandbox.ipynb")


def run_cli(args: argparse.Namespace) -> int:
    """``glsandbox run``: see the module docstring for the exit status."""
    import nbformat

    from ..audit.keys import signer_from_bytes
    from .verify import load_verify_key

    path = args.notebook
    key_path = getattr(args, "sign_key", None) or args.key
    try:
        key = load_verify_key(key_path)
        if key is not None:
            signer_from_bytes(key)  # a usable signing key (not a public key)
    except (OSError, ValueError) as exc:
        print(f"glsandbox run: error: cannot use key {key_path}: {exc}", file=sys.stderr)
        return 2
    nb = read_notebook(path)
    if nb is None:
        return 2
    if note := magic_notebook_note(nb, path):  # else it stops at the first magic cell with a UsageError
        print(printable(f"glsandbox run: note: {note}"), file=sys.stderr)
    try:
        parse_params(list(args.param))
    except ValueError as exc:
        print(f"glsandbox run: error: {exc}", file=sys.stderr)
        return 2
    if args.cwd and not os.path.isdir(args.cwd):
        print(f"glsandbox run: error: --cwd {args.cwd}: no such folder", file=sys.stderr)
        return 2
    out = args.output or default_output(path)
    out_folder = pin_folder(out)  # before the sandbox runs: at LENIENT it can write beside the notebook
    cwd = args.cwd or os.path.dirname(os.path.abspath(path))
    asked = args.level or "the kernel's config, else moderate"
    print(f"glsandbox run: {path} (level {asked}, isolation {args.isolation or 'default'})", flush=True)
    started = time.time()
    try:
        summary = run_notebook(nb, args, key=key, progress=lambda line: print(printable(line), flush=True), cwd=cwd)
    except Exception as exc:  # noqa: BLE001 - kernel start failures etc.: one line, exit 2
        print(f"glsandbox run: error: could not run the notebook: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finished = time.time()
    seal_run(nb, args, summary, key=key, started=started, finished=finished)
    try:
        replace_file(out, nbformat.writes(nb), folder=out_folder)
    except OSError as exc:
        print(f"glsandbox run: error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    result = verify_notebook(nb, key)
    ok_cells = sum(1 for c in summary.cells if c["status"] == "ok")
    used = ", ".join(levels_used(nb)) or "-"
    print(
        f"glsandbox run: {len(summary.cells)} cell(s) run at level {used}, {ok_cells} ok, "
        f"{summary.violations} violation(s); wrote {out}"
    )
    if summary.failed is not None:
        f = summary.failed
        print(printable(f"  failed: cell {f['index'] + 1} ({f['status']}): {f.get('error') or ''}".rstrip()))
    if not summary.completed:
        print("  the run stopped at the failing cell; later cells were not executed (--allow-errors to go on)")
    print(f"audit: {result.summary()}")
    for problem in result.problems[:20]:
        print(f"  {problem}")
    failed = summary.failed is not None or summary.violations > 0 or not result.ok
    return 1 if failed else 0


__all__ = [
    "add_run_parser",
    "inject_parameters",
    "parse_params",
    "read_notebook",
    "run_cli",
    "run_notebook",
    "seal_run",
    "write_evidence_metadata",
]
