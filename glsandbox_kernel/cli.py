"""The ``glsandbox`` command (host side): doctor, exec, audit, install, run, report, keygen, attest.

Each subcommand lives in the module that owns its subject and is wired here
through an ``add_*_parser``/``run_*`` pair; bad arguments exit with status 2
and a usage message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from .cli_options import add_project_options, add_sandbox_options, config_from_args
from .exceptions import SandboxConfigError, SandboxError
from .terminal_text import printable


class _Parser(argparse.ArgumentParser):
    """argparse that prints usage and exits 2 on any mistake (no traceback)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


# -- doctor ---------------------------------------------------------------------------------


def _probe(fn: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - doctor reports every probe failure as text
        return False, f"probe failed: {type(exc).__name__}: {exc}"


def _new_steps(reason: str, cls: Any) -> str:
    """The backend's hint without the steps its reason already gives, each step said once (the VM's
    reason ends "run scripts/build-vm-image ...", its hint "install qemu..., then run scripts/build-vm-image ...")."""
    hint = str(cls.unavailable_hint() or "")
    return ", then ".join(s for s in dict.fromkeys(hint.split(", then ")) if s.strip() and s not in reason)


def doctor_report() -> dict[str, Any]:
    """What this machine supports, each with a reason (used by ``glsandbox doctor``)."""
    from .backends.registry import backends, broken_backends

    report: dict[str, Any] = {"python": sys.version.split()[0], "euid": os.geteuid(), "backends": {}}
    for name, cls in sorted(backends().items()):
        ok, reason = _probe(cls.available)
        report["backends"][name] = {"available": ok, "reason": reason, "hint": "" if ok else _new_steps(reason, cls)}
    for name, error in sorted(broken_backends().items()):
        report["backends"][name] = {"available": False, "reason": error, "hint": "fix or uninstall the plugin"}
    report["features"] = {}
    features = report["features"]
    try:
        from . import confinement
    except ImportError:
        confinement = None  # type: ignore[assignment]
    probes: dict[str, Callable[[], tuple[bool, str]]] = {}
    if confinement is not None:
        for name in ("namespaces", "unprivileged_namespaces", "cgroups", "seccomp", "seccomp_notify", "landlock"):
            fn = getattr(confinement, f"probe_{name}", None)
            if fn is not None:
                probes[name] = fn
    # /dev/kvm alone is not KVM that runs a guest (KVM-PVM hosts): ask the VM backend's probe.
    from .backends.vm import probe_kvm

    probes.setdefault("kvm", probe_kvm)
    for name, fn in probes.items():
        ok, reason = _probe(fn)
        features[name] = {"available": ok, "reason": reason}
    default = None
    try:
        from .backends.registry import default_backend

        default = default_backend().name
    except SandboxError as exc:
        default = f"none ({exc})"
    report["default_backend"] = default
    return report


def _run_doctor(args: argparse.Namespace) -> int:
    report = doctor_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"glsandbox doctor  (python {report['python']}, euid {report['euid']})")
    print("\nBackends:")
    for name, info in report["backends"].items():
        mark = "yes" if info["available"] else "no "
        line = f"  {mark}  {name:<10} {info['reason']}"
        if info.get("hint"):
            line += f"  [hint: {info['hint']}]"
        print(line)
    print("\nKernel features:")
    for name, info in report["features"].items():
        mark = "yes" if info["available"] else "no "
        print(f"  {mark}  {name:<24} {info['reason']}")
    print(f"\nDefault backend: {report['default_backend']}")
    return 0


# -- exec -------------------------------------------------------------------------------------


def _run_exec(args: argparse.Namespace) -> int:
    from .sandbox import OSSandbox

    script = os.path.abspath(args.script)
    if not os.path.isfile(script):
        print(f"glsandbox exec: no such script: {args.script}", file=sys.stderr)
        return 2
    with open(script, encoding="utf-8") as fh:
        source = fh.read()
    if not args.project:
        from .project import default_project_dir

        args.project = default_project_dir(os.path.dirname(script))
    cfg = config_from_args(args)
    from .hidden_project import hidden_project_notice

    if hidden := hidden_project_notice(cfg):  # else the script's open() fails without a word why
        print(printable(f"glsandbox exec: {hidden}"), file=sys.stderr)

    def run(src: str, path: str, argv: list[str]) -> Any:  # WORKER side
        import sys as _sys

        _sys.argv = [path, *argv]
        namespace = {"__name__": "__main__", "__file__": path}
        try:
            exec(compile(src, path, "exec"), namespace)
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) or code is None else str(code)
        return 0

    try:
        with OSSandbox(cfg) as box:
            from .write_access import unwritable_folders

            for text in unwritable_folders(cfg, box.isolation_type):  # else its writes fail without a word why
                print(printable(f"glsandbox exec: {text}"), file=sys.stderr)
            result = box._call(run, (source, script, list(args.args)), {}, script=True)
    except SandboxError as exc:
        print(printable(f"glsandbox exec: {type(exc).__name__}: {exc}"), file=sys.stderr)
        return 125
    except BaseException as exc:  # noqa: BLE001 - the script's own error: print the sandbox traceback
        tb = getattr(exc, "sandbox_traceback", None)
        if tb:
            sys.stderr.write(printable("".join(tb)))
        else:
            print(printable(f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1
    if result is None:
        return 0
    if isinstance(result, int):
        return result
    print(printable(result), file=sys.stderr)
    return 1


# -- evidence ---------------------------------------------------------------------------------------


def _verify_notebook(args: argparse.Namespace) -> int:
    from .notebook.verify import verify_notebook_cli

    return verify_notebook_cli(args)


def _verify_attestation(args: argparse.Namespace) -> int:
    from .notebook.attest import verify_attestation_cli

    return verify_attestation_cli(args)


def _run_keygen(args: argparse.Namespace) -> int:
    from .audit.keys import keygen

    try:
        private, public, key_id = keygen(args.path, force=args.force)
    except FileExistsError:
        print(f"glsandbox keygen: {args.path} exists (--force to overwrite)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"glsandbox keygen: cannot write {args.path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"private key: {private} (mode 0600: keep it on the host, pass it as --sign-key)")
    print(f"public key:  {public} (give it to auditors: glsandbox audit verify --pubkey {public})")
    print(f"key id:      {key_id}")
    return 0


# -- main -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="glsandbox", description="Run untrusted Python in an OS-level sandbox, with an audit trail.")
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"glsandbox {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("doctor", help="what this machine supports, and why not")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_doctor)

    p = sub.add_parser("exec", help="run a script in a sandbox")
    add_sandbox_options(p)
    p.add_argument("--memory", help="memory limit, e.g. 200M")
    p.add_argument("--audit", help="append audit records to this JSONL file")
    add_project_options(p)
    p.add_argument("script")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_run_exec)

    from .audit.cli import add_audit_parser, register_file_verifier, run_audit

    add_audit_parser(sub)  # type: ignore[arg-type]
    sub.choices["audit"].set_defaults(func=run_audit)
    register_file_verifier(".ipynb", _verify_notebook)
    register_file_verifier(".intoto.jsonl", _verify_attestation)

    p = sub.add_parser("keygen", help="write an Ed25519 key pair for signing audit evidence")
    p.add_argument("path", metavar="PRIVATE", help="private key file (0600); the public key goes to PRIVATE.pub")
    p.add_argument("--force", action="store_true", help="overwrite an existing key")
    p.set_defaults(func=_run_keygen)

    # The subcommands that live with their subject; each registers itself with
    # ``set_defaults(func=...)``. Imported here, when the parser is built, and
    # never the other way round: they take shared options from cli_options.
    from .kernel.install import add_install_parser
    from .notebook.attest import add_attest_parser
    from .notebook.cluster import add_run_parser  # run.add_run_parser + --cluster
    from .notebook.report import add_report_parser

    for adder in (add_install_parser, add_run_parser, add_report_parser, add_attest_parser):
        adder(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        os.getcwd()
    except FileNotFoundError:  # a shell left in a removed folder: every relative path (and abspath) fails
        print(
            "glsandbox: error: the current folder no longer exists (was it deleted?): cd to an existing folder",
            file=sys.stderr,
        )
        return 2
    try:
        return int(args.func(args) or 0)
    except SandboxConfigError as exc:
        print(f"glsandbox: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
