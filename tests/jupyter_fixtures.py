"""Helpers for tests that talk to real kernels through jupyter_client.

``glsandbox_kernelspec`` installs the glsandbox kernelspecs (with this
interpreter's absolute path) into a temporary prefix with
``glsandbox install --prefix`` and puts it first on ``JUPYTER_PATH`` for the
test session. ``Kernel`` wraps a started kernel with an ``execute`` that
collects the IOPub messages of one request. ``jupyter_server`` starts a real
Jupyter server (or JupyterLab) on 127.0.0.1 with the project's server config.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

TIMEOUT = 30.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jupyter_server(
    base: Path,
    root: Path,
    *,
    app: str = "jupyter_server",
    env: Mapping[str, str | None] = {},
    args: Sequence[str] = (),
    timeout: float = 60.0,
) -> Iterator[dict[str, Any]]:
    """A Jupyter server (``app``: ``jupyter_server`` or ``jupyterlab``) on 127.0.0.1 serving ``root``.

    A random token; config (with jupyter-config/'s glsandbox server config), runtime
    dir and log under ``base``; ``env`` adds variables (None removes one). Yields
    ``url``, ``token``, ``root``, ``log`` once ``/api/status`` answers; on exit shuts
    its kernels down through the API, then stops it (its own process group).
    """
    config_d = base / "config" / "jupyter_server_config.d"
    config_d.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "jupyter-config", "jupyter_server_config.d", "glsandbox.json"), config_d)
    port, token = free_port(), secrets.token_hex(16)
    full_env = {**os.environ, "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime")}
    for name, value in env.items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    log_path = base / f"{app}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", app, "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}"),
            *("--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"),
            "--ServerApp.open_browser=False",
            *(["--allow-root"] if os.geteuid() == 0 else []),
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=full_env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{app} did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield {"url": url, "token": token, "root": root, "log": log_path}
    finally:
        try:
            with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=5) as r:
                for kernel in json.load(r):
                    urllib.request.urlopen(
                        urllib.request.Request(f"{url}/api/kernels/{kernel['id']}?token={token}", method="DELETE"),
                        timeout=20,
                    ).close()
        except OSError:
            pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


@pytest.fixture(scope="session")
def glsandbox_kernelspec() -> Iterator[str]:
    """Install glsandbox and glsandbox-strict into a temp prefix on JUPYTER_PATH."""
    from glsandbox_kernel.kernel.install import add_install_parser, run_install

    with tempfile.TemporaryDirectory(prefix="glsandbox-jupyter-") as prefix:
        import argparse

        parser = argparse.ArgumentParser()
        add_install_parser(parser.add_subparsers())
        assert run_install(parser.parse_args(["install", "--prefix", prefix])) == 0
        data = os.path.join(prefix, "share", "jupyter")
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = data + (os.pathsep + old if old else "")
        try:
            yield data
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


class Kernel:
    """A started kernel and a blocking client, with helpers that gather replies and outputs."""

    def __init__(self, name: str, **kw: Any) -> None:
        self.km, self.kc = start_new_kernel(kernel_name=name, startup_timeout=60, **kw)

    @property
    def pid(self) -> int:
        provisioner = self.km.provisioner
        assert provisioner is not None
        return int(provisioner.pid)  # type: ignore[attr-defined]

    def collect(self, msg_id: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """IOPub messages for ``msg_id`` until its idle status."""
        out = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"]["execution_state"] == "idle":
                    return out
                continue
            out.append(msg)

    def wait_for_stdout(self, msg_id: str, text: str, timeout: float = 120.0) -> list[dict[str, Any]]:
        """IOPub messages for ``msg_id`` up to the stdout stream holding ``text``: the cell got that far
        (interrupt it, query the kernel while it runs...). Pass the rest to :meth:`collect`."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            out.append(msg)
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout" and text in msg["content"]["text"]:
                return out
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                raise AssertionError(f"the cell ended before printing {text!r}: {out}")

    def shell_reply(self, msg_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def execute(self, code: str, timeout: float = TIMEOUT, **kw: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(execute_reply content, IOPub messages) of one cell."""
        msg_id = self.kc.execute(code, **kw)
        outputs = self.collect(msg_id, timeout)
        return self.shell_reply(msg_id, timeout)["content"], outputs

    def flush_iopub(self) -> None:
        while True:
            try:
                self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                return

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def stdout_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def stderr_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )


def notices_of(outputs: list[dict[str, Any]]) -> str:
    """Text of the kernel's own notices (state lost, limits): display_data marked role "notice"."""
    return "".join(
        m["content"]["data"].get("text/plain", "") + "\n"
        for m in outputs
        if m["msg_type"] == "display_data"
        and (m["content"].get("metadata") or {}).get("glsandbox", {}).get("role") == "notice"
    )


def kernel_made(msg: dict[str, Any]) -> bool:
    """An output the glsandbox kernel adds itself (audit output, monitor, banner, notice)."""
    if msg["msg_type"] not in ("display_data", "update_display_data"):
        return False
    return bool((msg["content"].get("metadata") or {}).get("glsandbox", {}).get("role"))


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the kernel's sandbox tree), via psutil."""
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
