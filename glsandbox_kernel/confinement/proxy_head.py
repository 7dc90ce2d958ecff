"""Request heads of the network proxy (HOST side): parsing and the error replies (see :mod:`.proxy`)."""

from __future__ import annotations

import fnmatch


def _pattern_matches(pattern: str, host: str, port: int) -> bool:
    phost, _, pport = pattern.rpartition(":")
    phost = phost.strip("[]").lower()
    if pport != "*" and pport != str(port):
        return False
    return fnmatch.fnmatchcase(host, phost)


def _split_hostport(text: str, default_port: int) -> tuple[str, int] | None:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        return None
    return (host, port) if host else None


#: request headers the proxy never forwards: its own, hop-by-hop, and ``Host`` (written from the checked URL)
_DROPPED = frozenset({"proxy-connection", "proxy-authorization", "connection", "host"})


def _parse_head(head: bytes) -> tuple[str, str, int, bytes | None, int | None] | None:
    """(kind, host, port, request head to send upstream or None, body bytes to forward or None: no limit).

    A plain-HTTP request goes upstream with ``Host`` written from the URL
    authority the allowlist decided on (RFC 9112 3.2.2: a proxy replaces the
    client's ``Host``), never the client's own; a head with several ``Host``
    headers, a folded or malformed header line (a bare CR/LF or NUL that a
    lenient server could split differently), ``Transfer-Encoding`` or an
    unclear ``Content-Length`` is refused (None). One request per
    connection: only ``Content-Length`` bytes of body follow the head;
    anything the client sends after them (a pipelined request that could
    name another ``Host``) is dropped.
    """
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:
        return None
    if text.startswith("FORWARD "):
        hp = _split_hostport(text[8:], 0)
        return None if hp is None else ("forward", hp[0], hp[1], None, None)
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    method, target, version = parts
    if any(c in lines[0] for c in "\n\0\t"):  # the request line is the one line a server could split
        return None
    if method.upper() == "CONNECT":
        hp = _split_hostport(target, 443)
        return None if hp is None else ("connect", hp[0], hp[1], None, None)
    if not target.lower().startswith("http://"):
        return None
    rest = target[7:]
    authority, slash, path = rest.partition("/")
    hp = _split_hostport(authority, 80)
    if hp is None:
        return None
    headers: list[str] = []
    hosts = 0
    lengths: set[str] = set()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or any(c in line for c in "\r\n\0") or line[0] in " \t":
            return None
        key = name.lower()
        if key == "transfer-encoding":
            return None
        hosts += key == "host"
        if key == "content-length":
            lengths.add(value.strip())
        if key not in _DROPPED:
            headers.append(line)
    if hosts > 1 or len(lengths) > 1 or not all(v.isdigit() for v in lengths):
        return None
    body = int(lengths.pop()) if lengths else 0
    host, port = hp
    shown = f"[{host}]" if ":" in host else host
    new_head = f"{method} /{path if slash else ''} {version}\r\nHost: {shown if port == 80 else f'{shown}:{port}'}\r\n"
    new_head += "".join(h + "\r\n" for h in headers)
    new_head += "Connection: close\r\n\r\n"
    return "http", host, port, new_head.encode("latin-1"), body


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _http_error(code: int, message: str) -> bytes:
    reason = _REASONS.get(code, "Error")
    body = (message + "\n").encode()
    return (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
