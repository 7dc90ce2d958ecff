"""``glsandbox run --cluster ADDRESS|local[:N] NB...``: many notebooks in parallel on Dask (host side).

Who calls: ``glsandbox run`` (the CLI registers it through :func:`add_run_parser`,
which adds ``--cluster`` to :mod:`.run`'s parser and routes every invocation
through :func:`run_or_cluster`; :mod:`.run` knows nothing of this module).
Each notebook is one Dask task; on the worker, :func:`run_notebook_task`
calls the same engine as ``glsandbox run NB`` (:func:`.run.run_notebook`:
nbclient against the glsandbox kernel, so every cell runs in that worker's
sandbox) and returns the executed notebook with its evidence metadata and
the kernel session's audit records. The client writes each output notebook,
verifies its evidence (:func:`.verify.verify_notebook`), seals the records
into one run chain (``--audit FILE``, checked by ``glsandbox audit verify``),
shows a progress bar on stderr and prints one summary.

Ctrl-C (SIGINT) cancels the notebooks no worker has started (the run chain and
its manifest name them), lets the running ones finish so that their records
are kept, then prints the summary and exits 130.

Exit status: 0 every notebook ran without error or violation and verifies;
1 any notebook failed, recorded a violation or did not verify; 2 usage
errors (unreadable notebook, cluster not reachable); 130 interrupted.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import os
import sys
import time
from typing import Any

from .. import hosttemp
from ..host_files import pin_folder, replace_file
from ..terminal_text import printable

_WORKER_ARGS = ("level", "isolation", "fallback", "timeout", "memory", "param", "no_monitor", "allow_errors")


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``glsandbox run`` (:func:`.run.add_run_parser`) with ``--cluster`` (called by the CLI)."""
    from .run import add_run_parser as add_single

    p = add_single(subparsers)
    add_cluster_arguments(p)
    return p


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--cluster`` and more notebooks to the ``glsandbox run`` parser :func:`add_run_parser` made."""
    p.add_argument("more_notebooks", nargs="*", metavar="NB", help="more notebooks (with --cluster)")
    p.add_argument(
        "--cluster",
        metavar="ADDRESS|local[:N]",
        default=None,
        help="run the notebooks in parallel on a Dask cluster: a scheduler address (tcp://host:8786) "
        "or local[:N] for a LocalCluster of N worker threads here (each notebook gets its own kernel process); --audit FILE is then the run's chain, "
        "-o a directory",
    )
    p.set_defaults(func=run_or_cluster)


def run_or_cluster(args: argparse.Namespace) -> int:
    """``glsandbox run``: one notebook here (:func:`.run.run_cli`), or many with ``--cluster``."""
    from .run import run_cli

    if getattr(args, "cluster", None) is None:
        if getattr(args, "more_notebooks", None):
            print("glsandbox run: error: several notebooks need --cluster ADDRESS|local[:N]", file=sys.stderr)
            return 2
        return run_cli(args)
    return run_cluster_cli(args)


# -- worker side (a Dask worker process: trusted host; the cells run in its sandbox kernel) --------


def run_notebook_task(job: dict[str, Any], *, options: dict[str, Any], audit_key: bytes | None = None) -> Any:
    """Task body: execute one notebook through :func:`.run.run_notebook` on this worker.

    Returns a :class:`~glsandbox_kernel.distributed.TaskOutcome` whose value
    is ``{"notebook": JSON text, "summary": {...}}``; a failure to run at all
    is its ``error``. ``audit_key`` signs the records (local clusters); a remote
    worker uses its own ``$GLSANDBOX_AUDIT_KEY``.
    """
    import nbformat
    from distributed import get_worker

    from ..audit import load_key
    from ..distributed.audit import encode_records
    from ..distributed.plugin import TaskOutcome, _ExceptionBox
    from .metadata import collect_records
    from .run import RunSummary, run_notebook, seal_run

    worker = get_worker()
    outcome = TaskOutcome(
        key=str(worker.get_current_task()),
        worker=str(worker.address),
        pid=os.getpid(),
        session_id=None,
        detail={"notebook": job["path"]},
    )
    outcome.started = time.time()
    args = argparse.Namespace(**options, audit=None)
    key = audit_key if audit_key is not None else load_key()
    try:
        nb = nbformat.reads(job["text"], as_version=4)
        cwd = job.get("cwd")
        scratch = None
        if not cwd or not os.path.isdir(cwd):
            cwd = scratch = hosttemp.private_dir("nb")
        try:
            summary: RunSummary = run_notebook(nb, args, key=key, cwd=cwd)
        finally:
            if scratch is not None:
                hosttemp.remove(scratch)  # whatever modes the notebook's sandbox left in it
        seal_run(
            nb, args, summary, key=key, started=outcome.started, finished=time.time(), cluster_worker=outcome.worker
        )
        records = collect_records(nb)
        outcome.lines = encode_records(records)
        # This run's kernel session: the newest records' (cells not run now keep an earlier run's outputs).
        stamped = [r for r in records if isinstance(r.get("session_id"), str) and _number(r.get("timestamp"))]
        newest = max(stamped, key=lambda r: float(r["timestamp"]), default=None)
        outcome.session_id = newest["session_id"] if newest is not None else None
        outcome.value = {
            "notebook": nbformat.writes(nb),
            "summary": {
                "cells": len(summary.cells),
                "ok_cells": sum(1 for c in summary.cells if c["status"] == "ok"),
                "violations": summary.violations,
                "completed": summary.completed,
                "failed": summary.failed,
            },
        }
    except Exception as exc:  # noqa: BLE001 - the notebook could not run: a result, with its type
        outcome.boxed_error = _ExceptionBox(exc)
    outcome.finished = time.time()
    return outcome


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- client side -------------------------------------------------------------------------------------


def _open_cluster(spec: str) -> tuple[Any, Any]:
    """``(client, cluster_or_None)`` for ``--cluster``: ``local[:N]`` or a scheduler address."""
    from distributed import Client

    from ..distributed.client import local_cluster

    if spec == "local" or spec.startswith("local:"):
        n = spec.partition(":")[2]
        workers = int(n) if n else max(1, os.cpu_count() or 1)
        if workers < 1:
            raise ValueError(f"--cluster local:N needs N >= 1, got {n}")
        # Worker threads in this process: each notebook's kernel and sandbox are processes
        # of their own already, so worker processes would only add their start-up.
        cluster = local_cluster(workers, processes=False)
        return Client(cluster), cluster
    return Client(spec, timeout=30), None


class _Progress:
    """A bar over notebooks and failures on stderr (one line per notebook when not a terminal)."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()

    def update(self, ok: bool, name: str) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        width = 30
        filled = int(width * self.done / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        text = (
            f"[{bar}] {self.done}/{self.total} notebook(s), {self.failed} failed, "
            f"{time.monotonic() - self.started:.1f}s"
        )
        if self.tty:
            self.stream.write("\r" + text + ("\n" if self.done == self.total else ""))
        else:
            self.stream.write(f"{text}  {'ok' if ok else 'FAILED'} {name}\n")
        self.stream.flush()


def _output_path(path: str, output: str | None, many: bool) -> str:
    from .run import default_output

    if output is None:
        return default_output(path)
    if not many and not output.endswith(os.sep) and not os.path.isdir(output):
        return output
    os.makedirs(output, exist_ok=True)
    return os.path.join(output, os.path.basename(default_output(path)))


def run_cluster_cli(args: argparse.Namespace) -> int:
    """``glsandbox run --cluster SPEC NB...``: see the module docstring for the exit status."""
    import nbformat

    from .run import read_notebook
    from .verify import load_verify_key, verify_notebook

    paths = [args.notebook, *(getattr(args, "more_notebooks", None) or [])]
    try:
        key = load_verify_key(args.key)
    except (OSError, ValueError) as exc:
        print(f"glsandbox run: error: cannot use key {args.key}: {exc}", file=sys.stderr)
        return 2
    jobs: list[dict[str, Any]] = []
    for path in paths:
        nb = read_notebook(path)
        if nb is None:
            return 2
        cwd = args.cwd or os.path.dirname(os.path.abspath(path))
        out_folder = pin_folder(_output_path(path, args.output, len(paths) > 1))  # before any sandbox runs
        jobs.append({"path": path, "text": nbformat.writes(nb), "cwd": os.path.abspath(cwd), "folder": out_folder})
    try:
        from .run import parse_params

        parse_params(list(args.param))
    except ValueError as exc:
        print(f"glsandbox run: error: {exc}", file=sys.stderr)
        return 2
    try:
        from ..distributed.executor import SandboxedExecutor

        client, cluster = _open_cluster(args.cluster)
    except ImportError:
        print(
            "glsandbox run: error: --cluster needs Dask: pip install 'glsandbox-kernel[distributed]'", file=sys.stderr
        )
        return 2
    except Exception as exc:  # noqa: BLE001 - unreachable scheduler, bad spec: one line, exit 2
        print(
            f"glsandbox run: error: cannot reach cluster {args.cluster}: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 2
    local = cluster is not None
    options = {name: getattr(args, name, None) for name in _WORKER_ARGS}
    options["param"] = list(options["param"] or [])
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    cancelled: list[str] = []
    with contextlib.ExitStack() as stack:
        if cluster is not None:
            stack.callback(cluster.close)
        stack.callback(client.close)
        workers = len(client.scheduler_info().get("workers", {}))
        print(
            f"glsandbox run: {len(jobs)} notebook(s) on {args.cluster} ({workers} worker(s), level {args.level or 'default'}, "
            f"isolation {args.isolation or 'default'})",
            flush=True,
        )
        executor = SandboxedExecutor(
            client, audit_path=args.audit, audit_key=key, register_plugin=False, label="glsandbox run --cluster"
        )
        stack.callback(executor.shutdown, wait=True, cancel_futures=True)  # on an error or Ctrl-C
        futures = executor.submit_tasks(
            run_notebook_task,
            jobs,
            "notebook",
            labels=[job["path"] for job in jobs],
            options=options,
            audit_key=key if local else None,
        )
        progress = _Progress(len(jobs))
        index = {future: job for future, job in zip(futures, jobs, strict=True)}
        with _interrupts() as interrupted:
            remaining, stopping = set(futures), False
            while remaining:
                done, remaining = cf.wait(remaining, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                if interrupted.is_set() and not stopping:
                    stopping = True
                    _stop(executor, len(remaining))
                for future in done:
                    job = index[future]
                    if isinstance(future.exception(), cf.CancelledError):
                        cancelled.append(job["path"])
                        continue
                    info = _finish(job, future, args, key, len(jobs) > 1, nbformat, verify_notebook)
                    results.append(info)
                    progress.update(info["ok"], job["path"])
            executor.shutdown(wait=True)
    code = _summary(results, args, time.monotonic() - started, executor, cancelled)
    return 130 if interrupted.is_set() else code


@contextlib.contextmanager
def _interrupts() -> Any:
    """SIGINT (Ctrl-C) sets the yielded event instead of raising, while the notebooks run (main thread only).

    The run loop then cancels what has not started (:func:`_stop`) and keeps collecting the
    running notebooks, so their records reach the run chain; the old handler is put back after.
    """
    import signal
    import threading

    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(_signum: int, _frame: Any) -> None:
        if event.is_set():
            print("glsandbox run --cluster: still waiting for the running notebook(s)", file=sys.stderr, flush=True)
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(executor: Any, left: int) -> None:
    """After Ctrl-C: cancel the notebooks no worker started (recorded in the run chain), say what runs on."""
    print("glsandbox run --cluster: interrupted: cancelling the notebooks not started yet", file=sys.stderr, flush=True)
    gone = executor.cancel_pending()
    print(
        f"glsandbox run --cluster: {len(gone)} notebook(s) cancelled on the scheduler; {max(0, left - len(gone))} "
        "given to a worker: the running ones finish (their records are kept), the others are cancelled there",
        file=sys.stderr,
        flush=True,
    )


def _finish(
    job: dict[str, Any],
    future: cf.Future[Any],
    args: argparse.Namespace,
    key: bytes | None,
    many: bool,
    nbformat: Any,
    verify_notebook: Any,
) -> dict[str, Any]:
    """Write one executed notebook, verify its evidence; what the summary needs."""
    info: dict[str, Any] = {"path": job["path"], "ok": False, "violations": 0, "output": None, "error": None}
    try:
        value = future.result()
    except BaseException as exc:  # noqa: BLE001 - reported per notebook
        info["error"] = f"{type(exc).__name__}: {exc}"[:500]
        return info
    nb = nbformat.reads(value["notebook"], as_version=4)
    out = _output_path(job["path"], args.output, many)
    try:
        replace_file(out, nbformat.writes(nb), folder=job["folder"])
    except OSError as exc:
        info["error"] = f"cannot write {out}: {exc.strerror or exc}"
        return info
    verified = verify_notebook(nb, key)
    summary = value["summary"]
    info.update(
        output=out,
        cells=summary["cells"],
        ok_cells=summary["ok_cells"],
        violations=summary["violations"],
        verified=verified.ok,
        audit=verified.summary(),
    )
    failed = summary.get("failed")
    if failed:
        info["error"] = f"cell {failed['index'] + 1} ({failed['status']}): {failed.get('error') or ''}".strip()
    info["ok"] = not failed and not summary["violations"] and verified.ok
    return info


def _summary(
    results: list[dict[str, Any]], args: argparse.Namespace, seconds: float, executor: Any, cancelled: list[str]
) -> int:
    bad = [r for r in results if not r["ok"]]
    for r in sorted(results, key=lambda r: r["path"]):
        mark = "ok    " if r["ok"] else "FAILED"
        line = f"  {mark} {r['path']}"
        if r.get("output"):
            line += f" -> {r['output']} ({r.get('ok_cells')}/{r.get('cells')} cells ok, {r['violations']} violation(s))"
        if r.get("error"):
            line += f": {r['error']}"
        print(printable(line))  # the error text is the sandbox's
        if r.get("audit") and not r.get("verified"):
            print(f"         audit: {r['audit']}")
    for path in sorted(cancelled):
        print(printable(f"  CANCELLED {path}: not started when the run was interrupted (no records, no output)"))
    violations = sum(int(r["violations"]) for r in results)
    chain = executor.audit
    where = f"{args.audit}" if args.audit else "memory (pass --audit FILE to keep it)"
    print(
        f"glsandbox run --cluster: {len(results)} notebook(s) in {seconds:.1f}s, {len(results) - len(bad)} ok, "
        f"{len(bad)} failed, {len(cancelled)} cancelled, {violations} violation(s); run chain: {len(chain.records)} record(s) in {where}, "
        f"head {chain.head[:16]}..."
    )
    return 1 if bad or cancelled else 0
