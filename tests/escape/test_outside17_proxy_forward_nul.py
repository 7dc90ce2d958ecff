"""Outside review 18: a NUL in a ``FORWARD`` destination passes a wildcard allowlist entry.

Severity: high (MODERATE with a wildcard ``allowed_hosts`` entry such as
``*.example.org:443``, every backend that binds the host proxy in).

Attack: the proxy's plain line protocol ``FORWARD host:port\\n`` is spoken by
anything in the sandbox that can write to the bound socket. The request-line
check for NUL/TAB/LF only runs for HTTP heads; a ``FORWARD`` line goes to
``_split_hostport`` unchecked. Sandboxed code sends
``FORWARD 203.0.113.7\\0.example.org:443``: ``fnmatch("*.example.org")`` sees
the whole string and matches, while ``socket.getaddrinfo`` hands the name to
C, which stops at the NUL and resolves ``203.0.113.7`` (any name or address
the attacker wants). The proxy then connects to that checked address.

What the host saw (decision only; no traffic sent: 203.0.113.7 is TEST-NET-3):
``_parse_head`` returns ``('forward', '203.0.113.7\\x00.example.org', 443, ...)``
and ``decide`` returns ``(True, 'allowed', [(AF_INET, ('203.0.113.7', 443))])``.

Expected: a destination with a NUL (or any byte not valid in a host name /
address literal) refused as a malformed request, and the name matched
against the allowlist is exactly the one resolved.

Fix direction (``confinement/proxy.py``): validate the host in ``decide``
(or ``_split_hostport``): only LDH labels, dots, an IP literal or a bracketed
IPv6 literal; reject control bytes for every request kind, not only in the
HTTP request line.
"""

from __future__ import annotations

import os

import pytest

from glsandbox_kernel.confinement.proxy import NetworkProxy, _parse_head


def test_forward_with_nul_does_not_pass_a_wildcard_entry(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = os.path.join(str(tmp_path_factory.mktemp("proxy")), "p.sock")
    parsed = _parse_head(b"FORWARD 203.0.113.7\x00.example.org:443")
    with NetworkProxy(path, ("*.example.org:443",), None) as proxy:
        decision = None if parsed is None else proxy.decide(parsed[1], parsed[2])
    assert decision is None or not decision[0], f"FORWARD with a NUL was {decision}"
