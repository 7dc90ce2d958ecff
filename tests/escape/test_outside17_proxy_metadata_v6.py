"""Outside review 18: metadata/link-local addresses in IPv6 forms the proxy still allows.

Severity: medium (LENIENT, ``mode="any"``, on an IPv6-enabled cloud host or
one with a NAT64 / 6to4 path).

Attack: a LENIENT cell asks the host proxy for an IPv6 literal that carries
the metadata address, or for a cloud's own IPv6 metadata address:

* ``64:ff9b::a9fe:a9fe`` (NAT64 well-known prefix around 169.254.169.254),
* ``::ffff:0:a9fe:a9fe`` (SIIT-translated form), ``2002:a9fe:a9fe::1``
  (6to4), ``::a9fe:a9fe`` (IPv4-compatible),
* ``64:ff9b::6464:64c8`` (NAT64 around Alibaba's 100.100.100.200),
* ``fd20:ce::254`` (Google Cloud's IPv6 metadata server; the name
  ``metadata.google.internal`` is blocked, its IPv6 address is not).

What the host saw (judged by the proxy's decision, no traffic sent):
``decide(addr, 80)`` returns ``(True, 'allowed')`` for each. The README says
"metadata and link-local always blocked", and ``addresses.host_local``
already unwraps exactly these embedded-IPv4 forms for loopback, but
``addresses.blocked_ip`` only unwraps ``::ffff:a.b.c.d`` (IPv4-mapped).

Expected: every form refused as "link-local/metadata address (always blocked)".

Fix direction (``confinement/addresses.py``): make ``blocked_ip`` use
``_embedded_ipv4`` (mapped, compatible, NAT64, 6to4, SIIT) like
``host_local``, and add ``fd20:ce::254/128`` to ``BLOCKED_NETWORKS``.
"""

from __future__ import annotations

import os

import pytest

from glsandbox_kernel.confinement.proxy import NetworkProxy

FORMS = [
    "64:ff9b::a9fe:a9fe",
    "::ffff:0:a9fe:a9fe",
    "2002:a9fe:a9fe::1",
    "::a9fe:a9fe",
    "64:ff9b::6464:64c8",
    "fd20:ce::254",
    "2001:0:a9fe:a9fe::5601:5601",  # Teredo, server 169.254.169.254
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254 (obfuscated)
    "fd00:ec2::254",
]


@pytest.mark.parametrize("address", FORMS)
def test_any_mode_refuses_metadata_in_ipv6_forms(tmp_path_factory: pytest.TempPathFactory, address: str) -> None:
    path = os.path.join(str(tmp_path_factory.mktemp("proxy")), "p.sock")
    with NetworkProxy(path, (), None, mode="any") as proxy:
        allowed, reason, _ = proxy.decide(address, 80)
    assert not allowed, f"{address} (metadata/link-local in an IPv6 form) was {reason!r}"
