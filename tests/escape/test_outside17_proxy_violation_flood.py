"""Outside review 18: refused proxy requests are recorded without any bound (host memory, audit log).

Severity: medium (MODERATE with ``allowed_hosts``, LENIENT for metadata /
host addresses; every backend that binds the host proxy in).

Attack: sandboxed code loops ``connect(proxy socket); send("FORWARD
blocked.example:443\\n")`` (or a ``CONNECT`` to a host not in the allowlist).
Each costs the sandbox a few microseconds and one short-lived fd.

What the host saw: every refusal appends a decision dict to
``NetworkProxy.decisions`` and a violation record to
``NetworkProxy.violations`` (neither is ever trimmed) and calls
``on_violation``, which the worker relays to the session: one more record in
the call's violation list and one audit-chain entry each. 3000 refusals of
the same host here: 3000 decisions, 3000 violations, 3000 relayed records.
The seccomp supervisor bounds the same kind of flood (``burst`` 8 records of
one kind per call, then one per second with ``repeats``); the proxy has no
such limit, so a long LENIENT/MODERATE session grows host memory and the
audit log at the sandbox's pace.

Expected: repeats of the same refusal merged like the supervisor's (a few
records plus ``repeats`` counts / a summary), and the proxy's own
``decisions``/``violations`` lists bounded.

Fix direction (``confinement/proxy.py``): reuse the supervisor's per-call
rate limiter (``supervisor.py`` ``_Limit``, ``begin_call``/``end_call``
summaries) for proxy refusals, keyed by (host, port, reason); keep only a
bounded tail (or counters) in ``decisions``/``violations``.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from glsandbox_kernel.confinement.proxy import NetworkProxy

N = 3000


def test_refusal_flood_is_rate_limited(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = os.path.join(str(tmp_path_factory.mktemp("proxy")), "p.sock")
    relayed: list[dict[str, Any]] = []
    with NetworkProxy(path, ("allowed.example:443",), None, on_violation=relayed.append) as proxy:
        for _ in range(N):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(path)
                c.sendall(b"FORWARD blocked.example:443\n")
                assert c.recv(4096).startswith(b"DENIED")
        kept = (len(proxy.decisions), len(proxy.violations), len(relayed))
    assert max(kept) < N // 10, f"{N} identical refusals kept as (decisions, violations, relayed) = {kept}"
