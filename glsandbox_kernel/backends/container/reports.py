"""What the sandbox says of its own violations, where no supervisor can see them (host side).

Under gVisor the sentry has no seccomp user notifications, so the host
cannot watch the worker's syscalls. The sandbox-side bootstrap then reports
exec attempts and escape-class ctypes calls on a second socket
(:class:`glsandbox_kernel.worker.bootstrap._Reporter`); this thread turns
each line into a violation record marked ``trusted: False`` (hostile input:
a line is capped, fields are taken by an allowlist and truncated, the rate
is bounded) and acks it, so the record exists before the call returns.
The kernel's filter still decides; these records only make the attempt
visible. Created by :func:`.launch.launch_worker`, stopped by the worker's
cleanup.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("glsandbox.container")

MAX_LINE = 4096
MAX_PER_SECOND = 200
_KINDS = {"exec", "syscall"}


def record_of(line: bytes) -> dict[str, Any] | None:
    """A violation record from one report line, or None when it is not one of ours."""
    try:
        raw = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("kind") not in _KINDS:
        return None
    syscall = str(raw.get("syscall", ""))[:32] or "unknown"
    path = raw.get("path") if raw["kind"] == "exec" else None
    record: dict[str, Any] = {
        "kind": raw["kind"],
        "syscall": syscall,
        "detail": f"{syscall}({str(path)[:256]!r})" if path is not None else f"{syscall}() looked up through ctypes",
        "pid": None,
        "time": time.time(),
        "trusted": False,
        "action": "denied",
        "escape": raw.get("escape") is True,
        "source": "sandbox-report (untrusted: gVisor has no seccomp user notifications)",
    }
    if path is not None:
        record["path"] = str(path)[:256]
    return record


class ReportReader:
    """Reads the bootstrap's reports on a daemon thread and acks each one."""

    def __init__(self, sock: socket.socket, on_record: Callable[[dict[str, Any]], None]) -> None:
        self.sock = sock
        self.on_record = on_record
        self._thread = threading.Thread(target=self._run, name="glsandbox-container-reports", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read()
        finally:
            self.stop()  # the reporter's recv then ends: a stuck line never hangs the worker

    def _read(self) -> None:
        buf = b""
        window, count = time.monotonic(), 0
        while True:
            try:
                chunk = self.sock.recv(MAX_LINE)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                now = time.monotonic()
                if now - window > 1.0:
                    window, count = now, 0
                count += 1
                record = record_of(line) if count <= MAX_PER_SECOND else None
                if record is not None:
                    try:
                        self.on_record(record)
                    except Exception:  # a broken listener must not stop the acks
                        log.exception("container reports: recording failed")
                with contextlib.suppress(OSError):
                    self.sock.sendall(b"k")
            if len(buf) > MAX_LINE:
                return  # not our bootstrap: stop listening (the filter still denies)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
