"""Step: drop privileges (uid/gid switch, capabilities, no_new_privs, dumpable).

Host side: :func:`plan_capabilities` decides the uid/gid the worker runs as
and whether the process may be marked non-dumpable. Child side:
:func:`drop_capabilities_child` clears the bounding and ambient sets,
switches uid/gid and empties the permitted/effective/inheritable sets;
:func:`no_new_privs_child` sets ``PR_SET_NO_NEW_PRIVS`` (needed by seccomp
and Landlock and by itself a guard against setuid binaries).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
from typing import Any

from ..linux import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    PR_GET_NO_NEW_PRIVS,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    libc,
    prctl,
    sysno,
)
from ._common import ChildState, ConfinementError, PlanContext, check

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def last_cap() -> int:
    """HOST side: the highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


@dataclasses.dataclass(frozen=True, kw_only=True)
class CapabilitiesSection:
    """The capabilities section (see :func:`plan_capabilities`)."""

    enabled: bool = True
    uid: int | None = None
    gid: int | None = None
    setgroups: bool = False
    dumpable: bool = True
    last_cap: int = 40


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoNewPrivsSection:
    """The no_new_privs section: always on in our plans (seccomp and Landlock need it)."""

    enabled: bool = True


def plan_capabilities(*, uid: int | None, gid: int | None, dumpable: bool, setgroups: bool) -> CapabilitiesSection:
    """HOST side: the capabilities section of a child plan.

    ``uid``/``gid``: ids (as seen in the worker's user namespace, or on the
    host without one) to switch to; None keeps the current ones.
    ``setgroups``: clear supplementary groups (needs CAP_SETGID).
    ``dumpable``: keep the process dumpable (False hides /proc/<pid>/mem and
    friends from other processes of the same uid; keep True where the host
    supervisor reads the worker's memory without CAP_SYS_PTRACE).
    """
    return CapabilitiesSection(uid=uid, gid=gid, setgroups=setgroups, dumpable=dumpable, last_cap=last_cap())


def plan_step(ctx: PlanContext) -> CapabilitiesSection:
    """HOST side: switch to the profile's ids; dumpable per the profile (never as root unless asked)."""
    p = ctx.profile
    dumpable = os.geteuid() != 0 if p.dumpable == "unless_root" else False
    return plan_capabilities(uid=p.uid, gid=p.gid, dumpable=dumpable, setgroups=p.setgroups)


def plan_no_new_privs(ctx: PlanContext) -> NoNewPrivsSection:
    """HOST side: no_new_privs, for every profile."""
    return NoNewPrivsSection()


def drop_capabilities_child(section: CapabilitiesSection | None, state: ChildState) -> None:
    """CHILD side: bounding set, ambient set, uid/gid switch, then capset(0).

    The bounding set is cleared first, while CAP_SETPCAP is still held; the
    uid switch follows while CAP_SETUID/CAP_SETGID are held; the final
    ``capset`` empties every set. A bounding-set drop refused with EPERM
    (an unprivileged worker of the BASIC backend holds no CAP_SETPCAP and
    no capability to drop) is reported, not fatal.
    """
    if not section or not section.enabled:
        return
    out: dict[str, Any] = {}
    bounding_ok = True
    for cap in range(section.last_cap + 1):
        if prctl(PR_CAPBSET_READ, cap) != 1:
            continue
        if prctl(PR_CAPBSET_DROP, cap) < 0:
            bounding_ok = False
            break
    out["bounding"] = "cleared" if bounding_ok else "kept: no CAP_SETPCAP (process holds no capabilities)"
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if section.setgroups:
        try:
            os.setgroups([])
        except OSError as exc:
            raise ConfinementError("capabilities", "setgroups([])", exc.errno) from exc
    gid = section.gid
    if gid is not None:
        try:
            os.setresgid(gid, gid, gid)
        except OSError as exc:
            raise ConfinementError("capabilities", f"setresgid({gid})", exc.errno) from exc
    uid = section.uid
    if uid is not None:
        try:
            os.setresuid(uid, uid, uid)
        except OSError as exc:
            raise ConfinementError("capabilities", f"setresuid({uid})", exc.errno) from exc
    _capset_empty_child()
    dumpable = 1 if section.dumpable else 0
    check("capabilities", f"prctl(PR_SET_DUMPABLE, {dumpable})", prctl(PR_SET_DUMPABLE, dumpable))
    out["dumpable"] = bool(dumpable)
    out["uid"] = os.getuid()
    out["gid"] = os.getgid()
    state.report["capabilities"] = out


def _capset_empty_child() -> None:
    """CHILD side: ``capset`` with all three sets empty."""
    nr = sysno("capset")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if nr is None:
        res = libc().capset(ctypes.byref(header), data)
    else:
        res = libc().syscall(nr, ctypes.byref(header), data)
    check("capabilities", "capset(empty)", int(res))


def no_new_privs_child(section: NoNewPrivsSection | None, state: ChildState) -> None:
    """CHILD side: ``prctl(PR_SET_NO_NEW_PRIVS, 1)``; never undone, inherited."""
    if section is None or not section.enabled:
        return
    check("no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS, 1)", prctl(PR_SET_NO_NEW_PRIVS, 1))
    state.report["no_new_privs"] = prctl(PR_GET_NO_NEW_PRIVS) == 1
