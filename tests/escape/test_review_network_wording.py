"""The README quotes the errors a sandbox sees for a blocked connection as the code words them (outside review).

The README said a blocked connection raises ``glsandbox: connection to 203.0.113.7:443 blocked by
the sandbox policy (network: allowlist, allowed hosts api.example.org:443)``; what a sandbox sees
says more (the proxy it may use, how to allow a host), and a request through the proxy gets
another text, a 403 body, and at an enforcing level a SandboxViolationError. Measured here with
``glsandbox exec`` in a real sandbox: each text, the proxy's port made ``PORT``, is in the README.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ..conftest import ROOT, glsandbox_cli
from .test_outside5_common import need

pytestmark = pytest.mark.timeout(300)

SCRIPT = """
import socket, urllib.request
try:
    socket.create_connection(("203.0.113.7", 443), timeout=5)
except OSError as e:
    print("DIRECT=" + str(e))
try:
    urllib.request.urlopen("https://203.0.113.7/", timeout=10)
except Exception as e:
    print("HTTPS=" + str(e.reason))
try:
    urllib.request.urlopen("http://203.0.113.7/", timeout=10)
except Exception as e:
    print("BODY=" + e.read().decode().strip())
"""


def test_readme_quotes_the_blocked_connection_errors_as_the_sandbox_sees_them(tmp_path: Path) -> None:
    need("namespace")
    tmp_path.chmod(0o755)  # lenient shows the project writable: a 0700 root folder is refused
    (tmp_path / "net.py").write_text(SCRIPT)
    readme = " ".join(Path(ROOT, "README.md").read_text().split())
    common = ("--isolation", "namespace", "--project", str(tmp_path), "--allow-host", "api.example.org:443")
    lenient = glsandbox_cli("exec", "--level", "lenient", *common, str(tmp_path / "net.py"))
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    seen = dict(line.split("=", 1) for line in lenient.stdout.splitlines() if "=" in line)
    assert set(seen) == {"DIRECT", "BODY", "HTTPS"}, lenient.stdout
    for text in seen.values():
        text = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:PORT", text)
        assert f"`{text}`" in readme or text in readme, text
    moderate = glsandbox_cli("exec", "--level", "moderate", *common, str(tmp_path / "net.py"))
    assert moderate.returncode == 125, moderate.stdout + moderate.stderr
    verdict = moderate.stderr.strip().removeprefix("glsandbox exec: ").split("; the call was stopped")[0]
    assert verdict.startswith("SandboxViolationError: ") and verdict in readme, moderate.stderr
