"""The glsandbox kernel's options and stdin relay, as functions of the kernel (host side).

Who calls: :class:`~glsandbox_kernel.kernel.kernel.SandboxKernel` (``sandbox_config``,
``_relay_input``); kept apart so the kernel module holds the protocol handlers only.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import zmq

from ..config import IsolationType, OSSandboxConfig, create_config_by_level, parse_size
from ..terminal_text import printable
from .relay import log


def option_values(kernel: Any) -> dict[str, object]:
    """The values of the kernel's configurable options (:class:`.traits.KernelOptions`), by name."""
    from .traits import KernelOptions

    return {name: getattr(kernel, name) for name in sorted(KernelOptions.class_trait_names(config=True))}


def config_from_traits(kernel: Any) -> OSSandboxConfig:
    """HOST side: the session's config from a :class:`SandboxKernel`'s traits (called by the kernel)."""
    cfg = create_config_by_level(kernel.level)
    overrides: dict[str, Any] = {}
    if kernel.isolation:
        overrides["isolation_type"] = IsolationType(kernel.isolation)
    if kernel.fallback_to_basic:
        overrides["fallback_to_basic"] = True
    if kernel.timeout is not None:
        overrides["execution_timeout"] = kernel.timeout if kernel.timeout > 0 else None
    if kernel.memory:
        overrides["limits"] = dataclasses.replace(cfg.limits, memory_limit_bytes=parse_size(kernel.memory))
    if kernel.audit_log:
        overrides["audit_log_path"] = os.path.abspath(os.path.expanduser(kernel.audit_log))
    overrides["filesystem"] = _filesystem_config(kernel, cfg)
    if kernel.allowed_hosts:
        overrides["network"] = dataclasses.replace(
            cfg.network, allow_network=True, allowed_hosts=tuple(kernel.allowed_hosts)
        )
    return cfg.replace(**overrides)


#: the kernel's notices for its first cell (this process hosts one kernel); True once they were taken
_start_notices: list[str | bool] = []


def _start_notice(text: str) -> None:
    if text not in _start_notices and True not in _start_notices:
        _start_notices.append(text)


def take_start_notices(config: OSSandboxConfig, isolation: str = "") -> list[str]:
    """The notices for the kernel's first cell, once: why no project folder is shown (the kernel's
    start folder, a folder it could not check), an existing output folder the sandbox cannot write, a
    project folder a container backend does not show (it holds masked names), a folder the level lets
    it write that it cannot (as root: a root-owned LENIENT project; ``isolation``: the sandbox's backend)."""
    from ..hidden_project import hidden_project_notice
    from ..project import output_dir_problem
    from ..write_access import unwritable_folders

    if True in _start_notices:
        return []
    problems = [p for p in (output_dir_problem(config), hidden_project_notice(config)) if p]
    problems += unwritable_folders(config, isolation)
    texts = [t for t in _start_notices if isinstance(t, str)] + [f"glsandbox: {p}\n" for p in problems]
    _start_notices[:] = [True]
    return texts


def _filesystem_config(kernel: Any, cfg: OSSandboxConfig) -> Any:
    """The project folder (option, else the kernel's cwd when it can be one) and the user's paths."""
    from ..project import default_project_dir

    def absolute(p: str) -> str:
        return os.path.abspath(os.path.expanduser(p))

    project = absolute(kernel.project) if kernel.project else default_project_dir()
    if project is None and not kernel.project:
        log.warning("glsandbox: %s cannot be a project folder; the sandbox shows no host folder", os.getcwd())
        _start_notice(
            f"glsandbox: the kernel started in {os.getcwd()}, which cannot be a project folder, so the sandbox shows "
            "no host folder; start it in the project folder (papermill: --cwd FOLDER) or set --project.\n"
        )
    fs = dataclasses.replace(
        cfg.filesystem,
        project_dir=project,
        project_access=kernel.project_access or None,
        readonly_paths=tuple(absolute(p) for p in kernel.readonly_paths),
        writable_paths=tuple(absolute(p) for p in kernel.writable_paths),
        output_dir=kernel.output_dir or None,
    )
    if project is not None and not kernel.project:
        # The implicit folder (the kernel's cwd) must not make every cell fail: one that
        # cannot be shown (too large to check for secrets) is not shown, with a warning.
        # The sandbox's start follows at once: it takes this scan (keep) instead of walking again.
        from ..exceptions import SandboxConfigError
        from ..project import project_layout

        try:
            project_layout(cfg.replace(filesystem=fs), keep=True)
        except SandboxConfigError as exc:
            log.warning("glsandbox: not showing %s to the sandbox: %s", project, exc)
            _start_notice(f"glsandbox: not showing {project} to the sandbox: {exc}\n")
            fs = dataclasses.replace(fs, project_dir=None)
    return fs


def relay_input(
    kernel: Any, prompt: str, password: bool, parent: dict[str, Any], ident: Any, deadline: float | None = None
) -> str:
    """Thread: an ``input_request`` on the stdin channel, answered by the frontend.

    Mirrors ``Kernel._input_request`` (flush stale replies, send, poll),
    but also stops waiting when an interrupt arrives on the control
    channel: the request runs in a helper thread, where no SIGINT lands.
    Raising KeyboardInterrupt here makes the sandboxed ``input()`` raise it.

    The wait ends at ``deadline`` (``time.monotonic()``; the cell's timeout) with
    :class:`~glsandbox_kernel.outputs.InputAbandoned`: no answer is sent, so the
    session's own clock ends the cell as a timeout (worker killed, the timeout's
    error and audit record). A reply that comes later is flushed by the next request,
    or dropped there when it names the request it answers.
    """
    from ..outputs import InputAbandoned

    # Whether this cell's request allows stdin is decided by the caller (``on_input`` is passed only
    # then), not by the kernel-wide ``_allow_stdin``, which a concurrent request may have changed.
    if kernel.session is None:
        log.warning("glsandbox: input() refused: the kernel has no session")
        raise EOFError("this frontend does not support input requests")
    while True:
        try:
            kernel.stdin_socket.recv_multipart(zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EAGAIN:
                break
            raise
    # The sandbox's text: a terminal frontend (jupyter console) prints it as it comes.
    content = {"prompt": printable(prompt), "password": bool(password)}
    request = kernel.session.send(kernel.stdin_socket, "input_request", content, parent, ident=ident)
    asked = (request or {}).get("header", {}).get("msg_id")
    while True:
        if kernel._interrupted.is_set() or kernel._closed:
            raise KeyboardInterrupt("interrupted while waiting for input")
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise InputAbandoned("the cell's timeout ran out while waiting for input")
        rlist, _, xlist = zmq.select(
            [kernel.stdin_socket], [], [kernel.stdin_socket], 0.05 if left is None else min(0.05, left)
        )
        if rlist or xlist:
            _ident, reply = kernel.session.recv(kernel.stdin_socket)
            # A reply that names another request is a late answer to an earlier prompt (one an
            # interrupt ended): dropped. jupyter_client's input() names none: taken, as ipykernel does.
            if reply is not None and reply.get("parent_header", {}).get("msg_id") in (None, "", asked):
                break
    value = reply.get("content", {}).get("value", "")
    if value == "\x04":
        raise EOFError
    return str(value)
