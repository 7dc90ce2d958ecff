"""The id maps of a sandbox's user namespace, written from outside it (either side, see each function).

A process inside a fresh user namespace may map only its own uid; the
sandbox's maps (as root: the sandbox uid onto an unprivileged host uid) need
CAP_SETUID in the parent namespace, so they are written by the zygote
template (:func:`write_maps_from_template`) for the child it forked, or by
P0 in the chain :mod:`.namespaces` builds elsewhere (:func:`write_proc`).
"""

from __future__ import annotations

import contextlib
import os
import struct

#: Set in a zygote child whose id maps the TEMPLATE writes (:func:`maps_by_template`):
#: ``(up_w, down_r)``. Then no P0 is forked: this process unshares itself and is P1.
template_pipes: tuple[int, int] | None = None
#: True in a zygote child the TEMPLATE cloned straight into its namespaces (:func:`clone_flags`)
#: and in the worker its init forked: no unshare, no P1 (see ``namespaces.init_cloned_child``).
cloned_by_template = False


def wants_template_maps(wire: object) -> bool:
    """TEMPLATE side: does this plan's namespaces section (plain data) need id maps written?"""
    ns = wire.get("namespaces") if isinstance(wire, dict) else None
    return (
        isinstance(ns, dict)
        and bool(ns.get("enabled"))
        and "user" in (ns.get("kinds") or ())
        and bool(ns.get("uid_map"))
    )


def clone_flags(wire: object) -> int:
    """TEMPLATE side: the clone(2) namespace flags to create this plan's child with, or 0.

    Non-zero only for a plan whose id maps the template writes
    (:func:`wants_template_maps`) and that has a pid namespace: the child
    then starts as pid 1 of it (the init) and forks the worker itself, so
    no P1 stays behind (one process per sandbox fewer: 20 idle sandboxes
    175 -> 134 MiB of PSS, see ``benchmarks/bench_idle.py``).
    """
    from ..linux import CLONE_NEWPID, CLONE_NS_FLAGS

    if not wants_template_maps(wire):
        return 0
    assert isinstance(wire, dict)
    kinds = wire["namespaces"].get("kinds") or ()
    if "pid" not in kinds:
        return 0
    flags = 0
    for kind in kinds:
        flag = CLONE_NS_FLAGS.get(kind)
        if flag is None:
            return 0  # refused in the child, by the plan's schema check
        flags |= flag
    return flags | CLONE_NEWPID


def maps_by_template(up_w: int, down_r: int) -> None:
    """FORKED CHILD of the zygote, before the plan: the template writes our id maps.

    :func:`unshare_child` then unshares in this very process (it becomes P1,
    the template's direct child) and waits on ``down_r`` for the template's
    answer instead of forking a P0 to write them: one process fewer per sandbox.
    """
    global template_pipes
    template_pipes = (up_w, down_r)


def write_maps_from_template(pid: int, wire: dict[str, object], up_r: int, down_w: int) -> None:
    """TEMPLATE side (trusted, unconfined): the child ``pid`` said it unshared; write its id maps.

    Reads the child's 5-byte note on ``up_r`` (b"U" unshared, b"E" + errno
    failed, EOF: it died), writes setgroups, uid_map and gid_map from the
    plan's namespaces section, and answers b"M", or b"E" + errno + a code
    naming the file that failed. Closes both fds.
    """
    try:
        msg = os.read(up_r, 5)
        if msg[:1] != b"U":
            return
        ns = wire["namespaces"]
        assert isinstance(ns, dict)
        answer = b"M"
        for code, (name, text) in enumerate(
            (
                ("setgroups", ns.get("setgroups") or "deny"),
                ("uid_map", ns["uid_map"]),
                ("gid_map", ns.get("gid_map") or ""),
            )
        ):
            try:
                write_proc(pid, name, str(text))
            except OSError as exc:
                answer = b"E" + struct.pack("ii", exc.errno or 0, code)
                break
        with contextlib.suppress(OSError):
            os.write(down_w, answer)
    except OSError:
        pass
    finally:
        os.close(up_r)
        os.close(down_w)


MAP_FILES = ("setgroups", "uid_map", "gid_map")


def write_proc(pid: int, name: str, text: str) -> None:
    """CHILD side (P0): one ``write`` of ``text`` to /proc/<pid>/<name>."""
    path = f"/proc/{pid}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        exc.filename = name
        raise
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        exc.filename = name
        raise
    finally:
        os.close(fd)
