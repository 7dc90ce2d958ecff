"""Kernel memory a sandbox tree holds in its sockets' buffers, read from outside (HOST side).

Who calls: :func:`glsandbox_kernel.memory_guard.tree_resident` (the outside
memory monitor, where no cgroup charges the sandbox), only when an fd of the
tree is a socket. Data queued in a socket lives in kernel ``sk_buff`` s: no
process's PSS, no memfd, no shm, so without this a cell fills socketpairs
(both ends, ``SO_SNDBUF`` at its maximum) and pins gigabytes past its limit.

The figure comes from the kernel's ``sock_diag`` netlink interface
(``NETLINK_SOCK_DIAG``), which answers for the network namespace its
netlink socket was made in:

- BASIC shares the host's namespace: one dump of its Unix sockets
  (``UDIAG_SHOW_MEMINFO``) and of its TCP/UDP sockets (``INET_DIAG_SKMEMINFO``),
  kept to the inodes the tree's fds hold (``/proc/PID/fd`` -> ``socket:[ino]``).
- A sandbox in a network namespace of its own (NAMESPACE): every socket of
  that namespace is the sandbox's, so all of them count, even one no fd holds
  any more (a socket in flight in another's queue, ``SCM_RIGHTS``). The host
  cannot ``setns`` there itself when unprivileged (it has no CAP_SYS_ADMIN in
  its own user namespace), so a short-lived helper process joins the sandbox's
  user namespace (its creator's uid has every capability there), then its
  network namespace, opens the netlink socket and hands its fd back; the
  host keeps that fd for the worker's life (:class:`DiagSockets`).

Per socket the kernel's ``SK_MEMINFO`` counts what is charged to it: bytes
received and queued (``rmem_alloc``), sent and not yet consumed
(``wmem_alloc``; a Unix socket's queued data is charged to its sender),
queued to send (``wmem_queued``), reserved (``fwd_alloc``), option memory and
the backlog.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_UDIAG_SHOW_MEMINFO, _UNIX_DIAG_MEMINFO = 0x20, 5
_INET_DIAG_SKMEMINFO = 7
_SIOCGSKNS = 0x894C  # an fd of the network namespace a socket belongs to
# SK_MEMINFO_*: rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem, backlog, drops
_RMEM, _WMEM, _FWD, _QUEUED, _OPTMEM, _BACKLOG = 0, 2, 4, 5, 6, 7
_HDR = struct.Struct("=IHHII")
_INET = [(socket.AF_INET, socket.IPPROTO_TCP), (socket.AF_INET6, socket.IPPROTO_TCP)]
_INET += [(socket.AF_INET, socket.IPPROTO_UDP), (socket.AF_INET6, socket.IPPROTO_UDP)]


def _charged(values: tuple[int, ...]) -> int:
    """Bytes one ``SK_MEMINFO`` array says the kernel holds for a socket."""
    if len(values) <= _BACKLOG:
        return sum(values[i] for i in (_RMEM, _WMEM) if i < len(values))
    sent = max(values[_WMEM], values[_QUEUED])  # TCP: the write queue's skbs and their clones in flight
    return values[_RMEM] + sent + max(0, values[_FWD]) + values[_OPTMEM] + values[_BACKLOG]


def _attrs(data: bytes, start: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[start + 4 : start + length]
        start += (length + 3) & ~3
    return out


def _dump(sock: socket.socket, request: bytes, body: int, ino_at: int, mem_attr: int) -> dict[int, int]:
    """One ``SOCK_DIAG_BY_FAMILY`` dump: socket inode -> bytes charged (the messages' layout:
    ``body`` bytes of the family's message, its inode at ``ino_at``, the meminfo attribute)."""
    sock.send(_HDR.pack(_HDR.size + len(request), SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + request)
    out: dict[int, int] = {}
    while True:
        data = sock.recv(1 << 17)
        if not data:
            return out
        at = 0
        while at + _HDR.size <= len(data):
            length, kind, _, _, _ = _HDR.unpack_from(data, at)
            if length < _HDR.size:
                return out
            if kind == _NLMSG_DONE:
                return out
            if kind == _NLMSG_ERROR:  # e.g. ENOENT: the kernel has no diag module for the protocol
                return out
            msg = at + _HDR.size
            (ino,) = struct.unpack_from("=I", data, msg + ino_at)
            mem = _attrs(data, msg + body, at + length).get(mem_attr)
            if mem:
                out[ino] = _charged(struct.unpack(f"={len(mem) // 4}I", mem[: len(mem) // 4 * 4]))
            at += (length + 3) & ~3


def unix_memory(sock: socket.socket) -> dict[int, int]:
    """Every Unix socket of ``sock``'s network namespace: inode -> bytes charged."""
    request = struct.pack("=BBHIII8x", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, _UDIAG_SHOW_MEMINFO)
    return _dump(sock, request, 16, 4, _UNIX_DIAG_MEMINFO)


def inet_memory(sock: socket.socket) -> dict[int, int]:
    """Every TCP and UDP socket (IPv4 and IPv6) of ``sock``'s network namespace: inode -> bytes."""
    out: dict[int, int] = {}
    for family, proto in _INET:
        request = struct.pack("=BBBxI48x", family, proto, 1 << (_INET_DIAG_SKMEMINFO - 1), 0xFFFFFFFF)
        out.update(_dump(sock, request, 72, 68, _INET_DIAG_SKMEMINFO))
    return out


def open_diag(pid: int | None = None) -> socket.socket:
    """A ``NETLINK_SOCK_DIAG`` socket in the network namespace of ``pid`` (None: this process's).

    Another namespace is reached through a helper process (see the module doc)."""
    if pid is None or _same_netns(pid):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _HELPER, str(pid), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            capture_output=True,
            timeout=30,
            check=False,
        )
        theirs.close()
        if proc.returncode != 0:
            raise OSError(f"cannot open sock_diag in the network namespace of {pid}: {proc.stderr.decode()[-300:]}")
        ours.settimeout(5)
        _, fds, _, _ = socket.recv_fds(ours, 16, 1)
        if not fds:
            raise OSError(f"no sock_diag socket came back from the namespace of {pid}")
        return socket.socket(fileno=fds[0])
    finally:
        theirs.close()
        ours.close()


def _same_netns(pid: int) -> bool:
    a, b = os.stat(f"/proc/{pid}/ns/net"), os.stat("/proc/self/ns/net")
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _netns_of_socket(sock: socket.socket) -> tuple[int, int] | None:
    """The (device, inode) of the network namespace ``sock`` was made in (``SIOCGSKNS``)."""
    try:
        fd = fcntl.ioctl(sock.fileno(), _SIOCGSKNS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return (st.st_dev, st.st_ino)


# Runs alone (single-threaded, as setns into a user namespace requires): joins the user namespace
# of the target when it is not ours (its creator owns it), then its network namespace.
_HELPER = r"""
import ctypes, os, socket, sys
pid, fd = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
def join(kind, flag):
    if os.stat(f"/proc/{pid}/ns/{kind}").st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino:
        return
    ns = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    if libc.setns(ns, flag) != 0:
        raise OSError(ctypes.get_errno(), f"setns {kind}")
    os.close(ns)
join("user", 0x10000000)
join("net", 0x40000000)
diag = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
socket.send_fds(socket.socket(fileno=fd), [b"s"], [diag.fileno()])
"""


def netns_of(pid: int) -> tuple[int, int] | None:
    """The (device, inode) naming ``pid``'s network namespace, or None (gone, or not ours to read)."""
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class DiagSockets:
    """One worker's ``sock_diag`` views (HOST side): a netlink socket per network namespace its
    processes are in, made on first use and kept until :meth:`close`.

    :meth:`charged` returns the bytes the tree's sockets hold: in the host's namespace those
    its fds name, in any other (the sandbox's own) every socket there.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: dict[tuple[int, int], socket.socket] = {}
        self._host = netns_of(os.getpid())

    def foreign(self, netns: tuple[int, int] | None) -> bool:
        """Whether ``netns`` is a namespace other than the host's (each socket in it counts)."""
        return netns is not None and netns != self._host

    def charged(self, spaces: dict[tuple[int, int], tuple[int, set[int]]]) -> int:
        """Bytes charged to the tree's sockets; ``spaces``: namespace -> (a pid in it, inodes of
        the sockets the tree's fds there hold)."""
        total = 0
        with self._lock:
            for netns, (pid, inodes) in spaces.items():
                sock = self._socks.get(netns)
                if sock is None:
                    try:
                        sock = self._socks[netns] = open_diag(pid)
                    except (OSError, subprocess.SubprocessError) as exc:
                        if netns_of(pid) != netns:  # that process is gone: asked again at the next reading
                            continue
                        raise OSError(f"sock_diag in the sandbox's network namespace: {exc}") from exc
                    made_in = _netns_of_socket(sock) if self.foreign(netns) else netns
                    if made_in != netns:  # the pid was reused meanwhile: another namespace, asked again
                        del self._socks[netns]
                        sock.close()
                        if made_in is None:
                            raise OSError("cannot tell which network namespace the sock_diag socket is in")
                        continue
                found = unix_memory(sock)
                if self.foreign(netns) or not inodes <= found.keys():  # BASIC: mostly socketpairs only
                    found.update(inet_memory(sock))
                if self.foreign(netns):
                    total += sum(found.values())
                else:
                    total += sum(found.get(ino, 0) for ino in inodes)
        return total

    def close(self) -> None:
        with self._lock:
            for sock in self._socks.values():
                sock.close()
            self._socks.clear()


__all__ = ["DiagSockets", "inet_memory", "netns_of", "open_diag", "unix_memory"]
