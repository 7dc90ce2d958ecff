"""Command-line options the ``glsandbox`` subcommands share, and what they turn into (host side).

Who calls: :mod:`glsandbox_kernel.cli` (``exec``) and the subcommand
modules it loads (``run``, ``report``, ``attest`` in :mod:`glsandbox_kernel.notebook`).
A neutral module below both, so a subcommand never imports the command that
loads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from typing import Any

from .config import IsolationType, SecurityLevel, create_config_by_level, parse_size


def add_notebook_command(
    subparsers: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str,
    output_help: str,
    output_metavar: str = "OUT",
) -> argparse.ArgumentParser:
    """Register subcommand ``name`` taking ``NOTEBOOK`` and ``-o/--output``, run by ``func``."""
    p: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=description)
    p.add_argument("notebook", metavar="NOTEBOOK")
    p.add_argument("-o", "--output", metavar=output_metavar, help=output_help)
    p.set_defaults(func=func)
    return p


def beside_notebook(path: str, suffix: str) -> str:
    """``a/b.ipynb`` -> ``a/b<suffix>``: where a subcommand writes what it made of a notebook by default."""
    return (path[:-6] if path.endswith(".ipynb") else path) + suffix


def config_from_args(args: argparse.Namespace) -> Any:
    """An OSSandboxConfig from the common --level/--isolation/--timeout/--memory options."""
    overrides: dict[str, Any] = {}
    cfg = create_config_by_level(args.level)
    if args.isolation:
        overrides["isolation_type"] = IsolationType(args.isolation)
    if getattr(args, "fallback", False):
        overrides["fallback_to_basic"] = True
    if args.timeout is not None:
        overrides["execution_timeout"] = args.timeout
    if getattr(args, "audit", None):
        overrides["audit_log_path"] = args.audit
    if getattr(args, "memory", None):
        overrides["limits"] = dataclasses.replace(cfg.limits, memory_limit_bytes=parse_size(args.memory))
    if getattr(args, "project", None):
        overrides["filesystem"] = dataclasses.replace(
            cfg.filesystem,
            project_dir=os.path.realpath(args.project),
            readonly_paths=tuple(os.path.realpath(p) for p in args.ro),
            writable_paths=tuple(os.path.realpath(p) for p in args.rw),
            output_dir=args.output_dir if args.output_dir is not None else cfg.filesystem.output_dir,
        )
    if getattr(args, "allow_host", None):
        overrides["network"] = dataclasses.replace(
            cfg.network, allow_network=True, allowed_hosts=tuple(args.allow_host)
        )
    return cfg.replace(**overrides) if overrides else cfg


def add_project_options(p: argparse.ArgumentParser) -> None:
    """``--project``, ``--ro``, ``--rw``, ``--output-dir``, ``--allow-host`` (exec; run passes them to the kernel)."""
    p.add_argument(
        "--project",
        metavar="DIR",
        help="project folder (default: the script's / notebook's folder); hidden at "
        "strict, read-only at moderate, writable at lenient",
    )
    p.add_argument("--ro", action="append", default=[], metavar="PATH", help="also show PATH read-only (repeatable)")
    p.add_argument("--rw", action="append", default=[], metavar="PATH", help="let the sandbox write PATH (repeatable)")
    p.add_argument("--output-dir", metavar="REL", default=None, help="writable folder in a read-only project")
    p.add_argument("--allow-host", action="append", default=[], metavar="HOST:PORT", help="allow HOST:PORT")


def project_kernel_argv(args: argparse.Namespace) -> list[str]:
    """The ``--SandboxKernel.*`` arguments for :func:`add_project_options` (``glsandbox run``)."""
    out: list[str] = []
    if getattr(args, "project", None):
        out.append(f"--SandboxKernel.project={os.path.realpath(args.project)}")
    out += [f"--SandboxKernel.readonly_paths={os.path.realpath(p)}" for p in getattr(args, "ro", None) or []]
    out += [f"--SandboxKernel.writable_paths={os.path.realpath(p)}" for p in getattr(args, "rw", None) or []]
    if getattr(args, "output_dir", None) is not None:
        out.append(f"--SandboxKernel.output_dir={args.output_dir}")
    out += [f"--SandboxKernel.allowed_hosts={h}" for h in getattr(args, "allow_host", None) or []]
    return out


def add_sandbox_options(
    p: argparse.ArgumentParser,
    *,
    timeout_help: str = "wall-clock limit in seconds",
    level_default: str | None = "moderate",
) -> None:
    """``--level``, ``--isolation``, ``--fallback``, ``--timeout`` (exec and run).

    ``level_default`` None (run): no level unless asked, the kernel's config file decides, else moderate.
    """
    level_help = (
        "security level (default: %(default)s)"
        if level_default
        else "security level (default: the kernel's config file's, else moderate)"
    )
    p.add_argument("--level", default=level_default, choices=[lvl.value for lvl in SecurityLevel], help=level_help)
    p.add_argument("--isolation", choices=[i.value for i in IsolationType], default=None)
    p.add_argument("--fallback", action="store_true", help="fall back to basic when the backend is unavailable")
    p.add_argument("--timeout", type=float, default=None, help=timeout_help)
