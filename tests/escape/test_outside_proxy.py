"""Outside review: the network proxy's decisions for host addresses that are not 127.0.0.0/8.

Judged by the proxy's decision (``NetworkProxy.decide``), before any
connection: no traffic is sent to the addresses named here.

Attack 1 (LENIENT, ``mode="any"``): the proxy refuses host loopback unless
listed, but the host's *other* addresses are the same host: a service bound
to 0.0.0.0 or [::] (a Jupyter server started with ``--ip=0.0.0.0``, a
database, a container runtime's TCP API) answers on the host's eth0 or bridge
address too. Measured here: ``decide("192.0.2.2", 8888)`` (eth0),
``decide("10.88.0.1", 8888)`` (the Podman bridge), ``decide("fd00::2", ...)``
all return ``(True, 'allowed')``.

Attack 2 (allowlist): ``explicit`` is computed from the allowlist entry's
name, not from the address it resolves to, so a listed *public* name that
resolves to 127.0.0.1 (DNS rebinding, a hostile or stale record) reaches the
host's loopback. The module docstring says loopback is reachable "only when
an allowlist entry names it literally". The resolver is the proxy's own
replaceable seam (``resolver=``), standing in for DNS.

Fix (suggested, ``confinement/proxy.py``): treat every address of a local
interface (``psutil.net_if_addrs()`` / ``/proc/net/if_inet6`` and
``fib_trie`` local routes, refreshed) like loopback; allow loopback only when
the allowlist entry itself is a loopback literal or ``localhost``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator

import psutil
import pytest

from glsandbox_kernel.confinement.proxy import NetworkProxy


def _host_addresses() -> list[str]:
    """This host's own non-loopback, non-link-local addresses (from its interfaces)."""
    found: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ipaddress.ip_address(a.address.split("%", 1)[0])
            if ip.is_loopback or ip.is_link_local:
                continue
            found.append(str(ip))
    return found


@pytest.fixture
def any_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkProxy]:
    path = os.path.join(str(tmp_path_factory.mktemp("proxy")), "p.sock")
    with NetworkProxy(path, (), None, mode="any") as proxy:
        yield proxy


def test_any_mode_refuses_the_hosts_own_interface_addresses(any_proxy: NetworkProxy) -> None:
    addrs = _host_addresses()
    if not addrs:
        pytest.skip("this host has no non-loopback address")
    allowed = {a: any_proxy.decide(a, 8888)[1] for a in addrs if any_proxy.decide(a, 8888)[0]}
    assert not allowed, f"LENIENT sandbox may reach host services on the host's own addresses: {allowed}"


def test_a_listed_name_resolving_to_loopback_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = os.path.join(str(tmp_path_factory.mktemp("proxy")), "q.sock")

    def rebinding(host: str, port: int) -> list[tuple[int, tuple[str, int]]]:
        return [(socket.AF_INET, ("127.0.0.1", port))]

    with NetworkProxy(path, ("api.example.org:443",), None, resolver=rebinding) as proxy:
        ok, why, _ = proxy.decide("api.example.org", 443)
    assert not ok, f"a public allowlisted name that resolves to 127.0.0.1 was allowed ({why})"


@pytest.mark.parametrize(
    "address", ["::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "::ffff:0:7f00:1", "::ffff:127.0.0.1"]
)
def test_any_mode_refuses_ipv6_forms_that_carry_the_host(any_proxy: NetworkProxy, address: str) -> None:
    """IPv4-compatible, NAT64, 6to4 and SIIT forms of loopback are the host too (a decision only)."""
    ok, why, _ = any_proxy.decide(address, 8888)
    assert not ok, f"{address} allowed ({why})"
