"""Which addresses the network proxy may connect to (HOST side, pure apart from the interface list).

The proxy (:mod:`.proxy`) asks :func:`blocked_ip` (link-local and cloud
metadata, always refused) and :func:`host_local` (the host itself: loopback,
unspecified, every address of its own interfaces, and the IPv6 forms that
carry one of those in an IPv4 part), before any connection.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time

#: Names that are cloud metadata endpoints whatever they resolve to.
METADATA_NAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    }
)
#: Networks never reachable through the proxy.
BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local, incl. 169.254.169.254 (AWS/GCP/Azure metadata)
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "fd20:ce::254/128",  # GCP metadata over IPv6
        "168.63.129.16/32",  # Azure WireServer (VM agent, goal state)
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",  # "this host"
        "::/128",
        "::ffff:169.254.0.0/112",  # IPv4-mapped link-local
    )
)
LOOPBACK_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "::ffff:127.0.0.0/104"))


def ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


_LOCAL_TTL = 5.0
_local_cache: tuple[float, frozenset[str]] = (0.0, frozenset())
_local_lock = threading.Lock()


def _local_addresses() -> frozenset[str]:
    """HOST side: every address of this host's interfaces (psutil), re-read at most every few seconds."""
    global _local_cache
    now = time.monotonic()
    with _local_lock:
        at, addrs = _local_cache
        if now - at > _LOCAL_TTL:
            import psutil

            found = set()
            for entries in psutil.net_if_addrs().values():
                for a in entries:
                    if a.family in (socket.AF_INET, socket.AF_INET6):
                        ip = ip_or_none(a.address)
                        if ip is not None:
                            found.add(str(ip))
            addrs = frozenset(found)
            _local_cache = (now, addrs)
        return addrs


def host_local(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``ip`` reaches this host itself: loopback, unspecified, or one of its interface addresses."""
    if isinstance(ip, ipaddress.IPv6Address) and any(host_local(v4) for v4 in _embedded_ipv4s(ip)):
        return True
    if ip.is_loopback or ip.is_unspecified:
        return True
    return str(ip) in _local_addresses()


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")


def _embedded_ipv4s(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 form carries: mapped, compatible (``::a.b.c.d``), NAT64, 6to4, SIIT,
    and Teredo's server and (de-obfuscated) client."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo
    packed = int(ip)
    if ip in _NAT64 or ip in _COMPAT or (packed >> 32) == 0xFFFF0000:  # ::ffff:0:a.b.c.d (SIIT)
        return (ipaddress.IPv4Address(packed & 0xFFFFFFFF),)
    return ()


def blocked_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Link-local or a cloud metadata address, also in every IPv6 form that carries one (as :func:`host_local`)."""
    if isinstance(ip, ipaddress.IPv6Address) and any(blocked_ip(v4) for v4 in _embedded_ipv4s(ip)):
        return True
    return any(ip.version == net.version and ip in net for net in BLOCKED_NETWORKS)


_LABEL = re.compile(r"[a-z0-9-]{1,63}")
_SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def destination_name(host: str) -> str | None:
    """The name the proxy matches and resolves for ``host``, or None when it is neither an IP literal nor LDH.

    An IP literal (IPv6 optionally in brackets, a scope id of interface-name
    characters) or a host name of letters, digits and hyphens in dot-separated
    labels of 1-63 characters, at most 253 in all, with at most one trailing
    dot (dropped). No other byte (NUL, controls, spaces, ``@``, non-ASCII)
    passes, so the name matched against the allowlist is the name resolved.
    """
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    literal, percent, scope = name.partition("%")
    if ip_or_none(literal) is not None and (not percent or _SCOPE.fullmatch(scope)):
        return name.lower()
    if name != host or "%" in name:
        return None  # brackets hold an IPv6 literal only
    name = name.lower()
    name = name[:-1] if name.endswith(".") else name
    if not 0 < len(name) <= 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return name
