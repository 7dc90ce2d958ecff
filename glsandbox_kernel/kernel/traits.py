"""The ``glsandbox`` kernel's options (host side): traitlets on :class:`KernelOptions`.

Set on the kernelspec's command line (``--SandboxKernel.level=strict``) or in
a traitlets config file (``glsandbox_kernel_config.json``: ``{"SandboxKernel":
{"level": "strict"}}``); :class:`~glsandbox_kernel.kernel.kernel.SandboxKernel`
inherits them, and :func:`~glsandbox_kernel.kernel.options.config_from_traits`
turns them into the sandbox's config.
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, CaselessStrEnum, Float, List, Unicode, validate
from traitlets.config import Configurable

from ..config import IsolationType, SecurityLevel, parse_size


class KernelOptions(Configurable):
    """The options of SandboxKernel (a mixin: the traits, validated; no behaviour)."""

    level = CaselessStrEnum(
        [lvl.value for lvl in SecurityLevel],
        default_value="moderate",
        help="Security level preset of the sandbox: strict, moderate or lenient.",
    ).tag(config=True)
    isolation = CaselessStrEnum(
        [i.value for i in IsolationType],
        default_value=None,
        allow_none=True,
        help="Isolation backend (basic, namespace, chroot, container, gvisor, vm); default: the strongest "
        "that runs here without a daemon.",
    ).tag(config=True)
    fallback_to_basic = Bool(
        False, help="Fall back to the basic backend when `isolation` is unavailable (recorded in the audit log)."
    ).tag(config=True)
    timeout = Float(
        None,
        allow_none=True,
        help="Wall-clock limit per cell in seconds (0: none); default: the level's preset.",
    ).tag(config=True)
    memory = Unicode(
        None, allow_none=True, help="Memory limit of the sandbox, e.g. 512M or 2G; default: the level's preset."
    ).tag(config=True)
    monitor = Bool(True, help="Show live resource use of running cells (metrics widget).").tag(config=True)
    monitor_widgets = CaselessStrEnum(
        ["auto", "always", "never"],
        default_value="auto",
        help="Live monitor as an ipywidget: auto (when the frontend renders widgets), always, or never "
        "(a static chart and summary when the cell ends).",
    ).tag(config=True)
    audit_log = Unicode(None, allow_none=True, help="Append audit records to this JSONL file.").tag(config=True)
    project = Unicode(
        None,
        allow_none=True,
        help="The project folder the sandbox sees (at its own path, as the working directory); default: the "
        "kernel's working directory, i.e. the notebook's folder. Hidden at strict, read-only at moderate, "
        "writable at lenient.",
    ).tag(config=True)
    project_access = CaselessStrEnum(
        ["none", "read", "write"],
        default_value=None,
        allow_none=True,
        help="Override how the project folder is shown: none, read or write; default: the level's.",
    ).tag(config=True)
    readonly_paths = List(
        Unicode(), help="More host folders or files shown read-only (at strict: the way to show data)."
    ).tag(config=True)
    writable_paths = List(Unicode(), help="More host folders the sandbox may write into.").tag(config=True)
    output_dir = Unicode(
        "sandbox-output",
        allow_none=True,
        help="The writable folder inside a read-only project folder (moderate), relative to it; '' for none.",
    ).tag(config=True)
    allowed_hosts = List(
        Unicode(),
        help="HOST:PORT patterns the sandbox may connect to (through the proxy), e.g. api.example.org:443; "
        "turns the network on at strict and moderate.",
    ).tag(config=True)

    @validate("memory")
    def _valid_memory(self, proposal: dict[str, Any]) -> str | None:
        value = proposal["value"]
        if value:
            parse_size(value)
        return value  # type: ignore[no-any-return]
