"""``glsandbox install``: write the glsandbox kernelspecs (host side).

Installs ``glsandbox`` ("Python 3 (sandboxed)": the level of
``glsandbox_kernel_config``, else MODERATE) and ``glsandbox-strict`` (STRICT),
or one spec of your choosing with ``--name``,
``--level``, ``--isolation``, ``--project``, ``--ro``, ``--rw``,
``--output-dir``, ``--allow-host``, ``--memory``, ``--timeout`` (each becomes a
``--SandboxKernel.<option>=...`` argument of the kernel, which beats the config
file). Only options asked for go on the argv: a level the spec does not name is
the config file's. The kernelspec's argv names this interpreter by
its absolute path, so the kernel runs where glsandbox is installed even when
``python3`` on PATH is another one. Specs go through jupyter_client's
``KernelSpecManager.install_kernel_spec``.

Who calls: :func:`glsandbox_kernel.cli.main` through :func:`add_install_parser`
/ :func:`run_install`, and tests (:func:`install_kernelspecs`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from ..config import IsolationType, SecurityLevel
from ..safe_python import module_argv

#: the two specs installed by default: (name, level; None: the config file's, else moderate).
DEFAULT_SPECS: tuple[tuple[str, str | None], ...] = (("glsandbox", None), ("glsandbox-strict", "strict"))


def default_name(level: str | None, isolation: str | None = None) -> str:
    """``glsandbox``, ``glsandbox-strict``, ``glsandbox-lenient-container`` ..."""
    parts = ["glsandbox"]
    if level and level != "moderate":
        parts.append(level)
    if isolation:
        parts.append(isolation)
    return "-".join(parts)


def display_name_for(level: str | None, isolation: str | None = None) -> str:
    """``Python 3 (sandboxed)``, ``Python 3 (sandboxed, strict)`` ..."""
    extras = [x for x in (None if level == "moderate" else level, isolation) if x]
    return "Python 3 (sandboxed" + "".join(f", {x}" for x in extras) + ")"


def kernel_spec(
    *,
    level: str | None = None,
    isolation: str | None = None,
    display_name: str | None = None,
    python: str | None = None,
    extra_argv: list[str] | None = None,
) -> dict[str, Any]:
    """The ``kernel.json`` content for one glsandbox kernel.

    ``level``/``isolation`` None: not on the argv, so ``glsandbox_kernel_config`` (else the
    trait's default, moderate) decides; a value given here beats the config file.
    """
    argv = [*module_argv(python or sys.executable, "glsandbox_kernel.kernel"), "-f", "{connection_file}"]
    if level:
        level = SecurityLevel(level.lower()).value
        argv.append(f"--SandboxKernel.level={level}")
    if isolation:
        isolation = IsolationType(isolation.lower()).value
        argv.append(f"--SandboxKernel.isolation={isolation}")
    argv += list(extra_argv or [])
    return {
        "argv": argv,
        "display_name": display_name or display_name_for(level, isolation),
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }


def install_kernelspecs(
    specs: list[tuple[str, dict[str, Any]]] | None = None,
    *,
    user: bool = False,
    prefix: str | None = None,
) -> list[str]:
    """Install ``(name, kernel.json dict)`` pairs (default: glsandbox and glsandbox-strict).

    ``prefix`` installs into ``PREFIX/share/jupyter/kernels``; ``user`` into
    the user's Jupyter data dir; neither: the system-wide location.
    Returns the directories written.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    if specs is None:
        specs = [(name, kernel_spec(level=level)) for name, level in DEFAULT_SPECS]
    manager = KernelSpecManager()
    written: list[str] = []
    for name, spec in specs:
        with tempfile.TemporaryDirectory(prefix="glsandbox-kernelspec-") as tmp:
            os.chmod(tmp, 0o755)
            with open(os.path.join(tmp, "kernel.json"), "w", encoding="utf-8") as fh:
                json.dump(spec, fh, indent=1)
                fh.write("\n")
            written.append(manager.install_kernel_spec(tmp, kernel_name=name, user=user, prefix=prefix))
    return written


def add_install_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``install`` to the ``glsandbox`` command's subparsers (called by the CLI)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "install",
        help="install the glsandbox Jupyter kernelspecs",
        description="Install Jupyter kernelspecs that run every cell in a glsandbox sandbox. Without --name, "
        "--level or --isolation: 'glsandbox' (moderate) and 'glsandbox-strict' (strict).",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument(
        "--sys-prefix", action="store_true", help=f"install into this Python's prefix ({sys.prefix}); the default"
    )
    where.add_argument("--prefix", help="install into PREFIX/share/jupyter/kernels")
    p.add_argument("--name", help="kernel name (default: glsandbox[-LEVEL][-ISOLATION])")
    p.add_argument("--display-name", help="name shown in the launcher")
    p.add_argument(
        "--level",
        choices=[lvl.value for lvl in SecurityLevel],
        help="security level (default: the config file's, else moderate)",
    )
    p.add_argument(
        "--isolation",
        choices=[i.value for i in IsolationType],
        help="isolation backend (default: the strongest available without a daemon)",
    )
    p.add_argument("--project", metavar="DIR", help="project folder of the kernel (default: the notebook's folder)")
    p.add_argument("--ro", action="append", default=[], metavar="PATH", help="show PATH read-only (repeatable)")
    p.add_argument("--rw", action="append", default=[], metavar="PATH", help="let the sandbox write PATH (repeatable)")
    p.add_argument("--output-dir", metavar="REL", help="writable folder inside a read-only project (moderate)")
    p.add_argument(
        "--allow-host", action="append", default=[], metavar="HOST:PORT", help="allow connections to HOST:PORT"
    )
    p.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 2G")
    p.add_argument("--timeout", type=float, metavar="S", help="wall-clock limit per cell (0: none)")
    p.set_defaults(func=run_install)
    return p


def option_argv(args: argparse.Namespace) -> list[str]:
    """The ``--SandboxKernel.*`` arguments for the options given to ``glsandbox install`` (validated)."""
    from ..config import NetworkConfig, parse_size
    from ..project import project_dir_problem

    out: list[str] = []
    if getattr(args, "project", None):
        project = os.path.abspath(os.path.expanduser(args.project))
        problem = project_dir_problem(project)
        if problem:
            raise ValueError(f"--project: {problem}")
        out.append(f"--SandboxKernel.project={project}")
    for flag, trait in (("ro", "readonly_paths"), ("rw", "writable_paths")):
        for path in getattr(args, flag, None) or []:
            out.append(f"--SandboxKernel.{trait}={os.path.abspath(os.path.expanduser(path))}")
    if getattr(args, "output_dir", None) is not None:
        out.append(f"--SandboxKernel.output_dir={args.output_dir}")
    hosts = list(getattr(args, "allow_host", None) or [])
    if hosts:
        NetworkConfig(allow_network=True, allowed_hosts=tuple(hosts))  # raises on a malformed pattern
        out += [f"--SandboxKernel.allowed_hosts={h}" for h in hosts]
    if getattr(args, "memory", None):
        parse_size(args.memory)
        out.append(f"--SandboxKernel.memory={args.memory}")
    if getattr(args, "timeout", None) is not None:
        out.append(f"--SandboxKernel.timeout={args.timeout:g}")
    return out


def run_install(args: argparse.Namespace) -> int:
    """Run ``glsandbox install``; returns the exit status."""
    prefix = args.prefix or (None if args.user else sys.prefix)
    if args.prefix:
        prefix = os.path.abspath(args.prefix)
    from ..exceptions import SandboxConfigError

    try:
        extra = option_argv(args)
    except (ValueError, SandboxConfigError) as exc:
        print(f"glsandbox install: {exc}", file=sys.stderr)
        return 2
    single = args.name or args.level or args.isolation or args.display_name or extra
    if single:
        level = args.level
        spec = kernel_spec(level=level, isolation=args.isolation, display_name=args.display_name, extra_argv=extra)
        specs = [(args.name or default_name(level, args.isolation), spec)]
    else:
        specs = [(name, kernel_spec(level=level)) for name, level in DEFAULT_SPECS]
    try:
        paths = install_kernelspecs(specs, user=bool(args.user), prefix=prefix)
    except (OSError, ValueError) as exc:
        print(f"glsandbox install: {exc}", file=sys.stderr)
        return 1
    for (name, spec), path in zip(specs, paths, strict=True):
        print(f"Installed kernelspec {name} ({spec['display_name']}) in {path}")
    for warning in missing_folder_warnings(args):
        print(f"glsandbox install: warning: {warning}", file=sys.stderr)
    return 0


def missing_folder_warnings(args: argparse.Namespace) -> list[str]:
    """The folders given to ``glsandbox install`` that do not exist (yet): a kernelspec is installed
    for them all the same (a folder may be made later), but the analyst hears it now, not at the
    first cell (the README's ``--project ~/emissions``, copied as written)."""
    named = [("--project", args.project)] if getattr(args, "project", None) else []
    named += [(f"--{flag}", p) for flag in ("ro", "rw") for p in getattr(args, flag, None) or []]
    fails = {
        "--project": "every cell fails with SandboxConfigError until it does",
        "--ro": "the sandbox does not show it until it does",
        "--rw": "the sandbox does not show it until it does",
    }
    return [
        f"{flag} {full} does not exist (yet): {fails[flag]}"
        for flag, given in named
        if not os.path.isdir(full := os.path.abspath(os.path.expanduser(given)))
    ]
