"""The proxy's bounds (review 18): destination names, the head deadline, exact counts under the rate limit.

Every case runs the real :class:`NetworkProxy` on a Unix socket of the
test's own; destinations are TEST-NET literals or names that never resolve
off the machine (``.invalid``), judged by the proxy's decision only.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel.confinement.addresses import destination_name
from glsandbox_kernel.confinement.proxy import NetworkProxy
from glsandbox_kernel.supervisor import violation_count


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("Example.ORG", "example.org"),
        ("example.org.", "example.org"),
        ("a-b.c1.example", "a-b.c1.example"),
        ("203.0.113.7", "203.0.113.7"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
    ],
)
def test_ip_literals_and_ldh_names_pass(host: str, name: str) -> None:
    assert destination_name(host) == name


@pytest.mark.parametrize(
    "host",
    [
        "203.0.113.7\0.example.org",
        "a.example.org\n",
        " a.example.org",
        "a b.example.org",
        "user@a.example.org",
        "a..example.org",
        "a.example.org..",
        ".a.example.org",
        "",
        ".",
        "loc\xaalhost",
        "a_b.example.org",
        "[a.example.org]",
        "fe80::1%\0x.example.org",
        "x" * 64 + ".example.org",
        ".".join(["a" * 60] * 5),
    ],
)
def test_other_names_are_malformed(tmp_path: Path, host: str) -> None:
    assert destination_name(host) is None
    with NetworkProxy(str(tmp_path / "p.sock"), ("*.example.org:443", "*:443")) as proxy:
        allowed, reason, addrs = proxy.decide(host, 443)
    assert (allowed, addrs) == (False, []) and reason.startswith("malformed destination")


def _ask(path: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(30)
        c.connect(path)
        c.sendall(request)
        reply = b""
        while chunk := c.recv(4096):
            reply += chunk
        return reply


def test_a_head_not_complete_by_the_deadline_is_closed(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sock")
    with NetworkProxy(path, (), None, mode="any", head_timeout=0.5) as proxy:
        reply = _ask(path, b"GET http://a.invalid/ HTTP/1.1\r\nX-Slow: ")
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert proxy.counts["slow_heads"] == 1 and proxy.decisions == []


def test_over_the_cap_is_refused_with_503_and_recorded(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sock")
    records: list[dict[str, Any]] = []
    with NetworkProxy(path, (), None, mode="any", max_connections=2, on_violation=records.append) as proxy:
        held = []
        try:
            for _ in range(2):
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(path)
                c.sendall(b"GET http://a.invalid/ HTTP/1.1\r\n")
                held.append(c)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:  # the third: refused at once
                c.settimeout(30)
                c.connect(path)
                assert c.recv(4096).startswith(b"HTTP/1.1 503 ")
            assert proxy.counts["over_capacity"] == 1
        finally:
            for c in held:
                c.close()
    assert records and all(r["kind"] == "network" and r["trusted"] for r in records)
    assert "proxy connections open at once" in records[-1]["detail"]


def test_rate_limited_refusals_are_all_counted(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sock")
    relayed: list[dict[str, Any]] = []
    n = 300
    with NetworkProxy(str(path), ("allowed.invalid:443",), None, on_violation=relayed.append) as proxy:
        for i in range(n):
            host = "blocked.invalid" if i % 2 else f"h{i}.invalid"  # one kind repeated, many kinds once
            assert _ask(path, f"FORWARD {host}:443\n".encode()).startswith(b"DENIED")
        proxy.end_call()
        assert proxy.counts["refused"] == n and len(proxy.decisions) <= 256
    assert sum(violation_count(r) for r in relayed) == n
    assert len(relayed) < n // 2
