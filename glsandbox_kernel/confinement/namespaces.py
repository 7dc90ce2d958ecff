"""Step: Linux namespaces (user, mount, pid, net, ipc, uts, cgroup) and the pid-1 init.

Host side: :func:`plan_namespaces` and :func:`userns_available`.

Child side: :func:`unshare_child` then :func:`fork_init_child`. Together
they turn the calling process into a chain, the way bubblewrap does with its
monitor and pid-1 processes::

    P0  (host pid namespace; the pid the host knows)
     │  writes P1's uid_map/gid_map from the parent user namespace
     └─ P1  unshare(CLONE_NEWUSER|NEWNS|NEWPID|NEWNET|NEWIPC|NEWUTS|NEWCGROUP)
         └─ P2  pid 1 of the new pid namespace: the init
             └─ P3  pid 2: the worker; the only process that returns

Forked from the zygote, there is no P0: the template itself plays its part
(:func:`.idmaps.maps_by_template`, :func:`.idmaps.write_maps_from_template`).
With a pid namespace there is no P1 either: the template clones its child
straight into the namespaces (:func:`glsandbox_kernel.linux.clone_fork`), so
that child is the init, it forks the worker at once
(:func:`init_cloned_child`), becomes a tiny program that holds none of the
template's pages (:mod:`.tiny_init`) and hands the worker's wait status to
the template; the worker carries out the plan (still the host uid until
:func:`fork_init_child` switches ids). Without a pid namespace the template's
child is P1 and reads the worker's status from the init. The chain above is
what :func:`apply_child_plan` builds when it is called anywhere else (the
tests fork it straight from pytest).

P0 writes the id maps because a process inside a fresh user namespace may
map only its own uid; as root we map the sandbox uid to an unprivileged
host uid instead, which needs CAP_SETUID in the parent namespace. Between
the two halves P1 still has its host uid, in the new mount namespace: the
mounts step opens its bind sources there (``O_PATH``), because once P1 is
the sandbox uid it can no longer walk into root-only directories such as
/root/.pyenv.

P0, P1 and P2 never return: they close every inherited fd, forward
SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 down the chain, reap, and end
the way the worker ended (same exit code, or the same signal): the init
writes the worker's wait status straight to P0. Each one dies with its
parent (``PR_SET_PDEATHSIG``); when the init P2 exits the kernel kills every
process left in the pid namespace, so a double-forked daemon cannot outlive
the sandbox.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import os
import select
import signal
import struct
from typing import Literal, NoReturn

from ..linux import CLONE_NEWUSER, CLONE_NS_FLAGS, PR_SET_DUMPABLE, PR_SET_PDEATHSIG, clone_fork, libc, prctl
from . import idmaps, tiny_init
from ._common import ChildState, ConfinementError, PlanContext, close_fds_except
from .idmaps import MAP_FILES as _MAP_FILES
from .idmaps import write_proc as _write_proc
from .mirror import FORWARDED_SIGNALS as _FORWARDED_SIGNALS
from .mirror import read_exact, unignore_forwarded_signals, wait_and_mirror_child
from .profile import SANDBOX_GID, SANDBOX_UID, UNPRIVILEGED_HOST_ID

FLAGS = CLONE_NS_FLAGS
__all__ = ["SANDBOX_GID", "SANDBOX_UID", "UNPRIVILEGED_HOST_ID", "NamespacesSection", "plan_namespaces"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class NamespacesSection:
    """The namespaces section of a child plan (see :func:`plan_namespaces`).

    With a user namespace: ``uid_map``/``gid_map`` as P0 writes them,
    ``setgroups`` ("allow" as root, "deny" otherwise), the host ids the
    sandbox ids map to, and the ids P1 switches to inside it.
    """

    enabled: bool = True
    kinds: tuple[str, ...]
    hostname: str = "sandbox"
    uid_map: str | None = None
    gid_map: str | None = None
    setgroups: Literal["allow", "deny"] | None = None
    host_uid: int | None = None
    host_gid: int | None = None
    uid: int = SANDBOX_UID
    gid: int = SANDBOX_GID


def plan_namespaces(
    *,
    kinds: tuple[str, ...] = ("user", "mount", "pid", "net", "ipc", "uts", "cgroup"),
    hostname: str = "sandbox",
    host_ids: tuple[int, int] | None = None,
) -> NamespacesSection:
    """HOST side: the namespaces section of a child plan.

    With a user namespace the sandbox uid/gid (1000) maps to the host's own
    ids, or to 65534 when the host runs as root (so the worker is never host
    root). ``host_ids``: as root, map to these (non-root) ids instead, so the
    files the sandbox writes into a writable folder belong to its owner (see
    :func:`glsandbox_kernel.project.writer_ids`). ``setgroups`` is denied for
    an unprivileged host, as the kernel requires before an unprivileged
    gid_map write.
    """
    for k in kinds:
        if k not in FLAGS:
            raise ValueError(f"unknown namespace kind {k!r}")
    if "user" not in kinds:
        return NamespacesSection(kinds=tuple(kinds), hostname=hostname)
    root = os.geteuid() == 0
    out_uid = UNPRIVILEGED_HOST_ID if root else os.geteuid()
    out_gid = UNPRIVILEGED_HOST_ID if root else os.getegid()
    if root and host_ids is not None and host_ids[0] != 0:
        out_uid, out_gid = host_ids
    return NamespacesSection(
        kinds=tuple(kinds),
        hostname=hostname,
        uid_map=f"{SANDBOX_UID} {out_uid} 1\n",
        gid_map=f"{SANDBOX_GID} {out_gid} 1\n",
        setgroups="allow" if root else "deny",
        host_uid=out_uid,
        host_gid=out_gid,
    )


def plan_step(ctx: PlanContext) -> NamespacesSection | None:
    """HOST side: the namespaces the profile names (none: no section)."""
    if not ctx.profile.namespaces:
        return None
    from ..project import layout_for, writer_ids

    return plan_namespaces(kinds=ctx.profile.namespaces, host_ids=writer_ids(layout_for(ctx)))


@functools.cache
def userns_available() -> tuple[bool, str]:
    """HOST side: whether this process can create a user namespace, and why not.

    Probes for real: a forked child calls ``unshare(CLONE_NEWUSER)``.
    """
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read()) == 0:
                return False, "user.max_user_namespaces is 0"
    except (OSError, ValueError):
        pass
    pid = os.fork()
    if pid == 0:  # probe child
        rc = libc().unshare(CLONE_NEWUSER)
        os._exit(0 if rc == 0 else min(ctypes.get_errno(), 255) or 255)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return True, "unshare(CLONE_NEWUSER) works"
    hint = ""
    if os.path.exists("/proc/sys/kernel/unprivileged_userns_clone"):
        hint = "; try sysctl kernel.unprivileged_userns_clone=1"
    if os.path.exists("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
        hint = "; AppArmor restricts unprivileged user namespaces"
    return False, f"unshare(CLONE_NEWUSER): {os.strerror(code) if code > 0 else code}{hint}"


#: TEMPLATE side, inherited by its children: whether a fork must run Python's fork hooks. The
#: template clears it when it imported no module beyond its own (see :func:`..linux.clone_fork`).
fork_hooks = True
_saved_mask: set[int | signal.Signals] = set()
_p0_pid = 0
_status_w = -1
_status_r = -1


def unshare_child(section: NamespacesSection | None, state: ChildState) -> None:
    """CHILD side, first half: fork P1 and unshare; returns only in P1.

    P0 writes P1's id maps, then waits for P1 and mirrors how it ended; it
    raises :class:`ConfinementError` instead when ``unshare`` or the map
    writes fail (P0 is still the host's direct child then and can report).
    P1 holds its host uid until :func:`fork_init_child`, so the caller can
    still open host paths (the mount sources) in the new mount namespace.
    """
    if not section or not section.enabled:
        return
    global _saved_mask, _p0_pid, _status_w, _status_r
    if idmaps.cloned_by_template:  # cloned into them by the template: see init_cloned_child
        return
    flags = 0
    for kind in section.kinds:
        flags |= FLAGS[kind]
    if idmaps.template_pipes is not None and section.uid_map is not None:
        up_w, down_r = idmaps.template_pipes
        idmaps.template_pipes = None
        _saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED_SIGNALS)
        try:
            _status_r, _status_w = os.pipe()  # the init (P2) -> this P1: the worker's wait status
            _p0_pid = os.getppid()  # the template: P1's parent from now on
            _unshare_with_template_maps(section, flags, up_w, down_r)
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, _saved_mask)
            raise
        return  # P1, in the new namespaces; still the host's direct child, so errors reach it
    p0 = _p0_pid = os.getpid()
    # Forwarded signals stay blocked until each intermediate process has its
    # forwarding handler; the worker gets the original mask back.
    _saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED_SIGNALS)
    up_r, up_w = os.pipe()  # P1 -> P0: b"U" unshared, or b"E" + errno
    down_r, down_w = os.pipe()  # P0 -> P1: b"M" maps written, or b"E"
    status_r, status_w = os.pipe()  # the init (P2) -> P0: the worker's wait status
    try:
        pid1 = os.fork()
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, _saved_mask)
        raise ConfinementError("namespaces", "fork()", exc.errno) from exc
    if pid1 == 0:
        try:
            _status_w = status_w
            for fd in (up_r, down_w, status_r):
                os.close(fd)
            _p1_unshare_child(flags, p0, up_w, down_r)
        except BaseException:  # noqa: BLE001 - an intermediate process must never return
            os._exit(255)
        state.intermediate = True  # P1 must never return from the plan
        return  # P1, in the new namespaces
    for fd in (up_w, down_r, status_w):
        os.close(fd)
    try:
        _p0_child(section, pid1, up_r, down_w, status_r)
    finally:  # only reached when P0 raises ConfinementError
        signal.pthread_sigmask(signal.SIG_SETMASK, _saved_mask)


def fork_init_child(section: NamespacesSection | None, state: ChildState) -> None:
    """CHILD side, second half (in P1): become the sandbox uid, fork init and worker.

    Returns only in the worker P3; P1 and the init P2 wait and mirror.
    """
    if not section or not section.enabled:
        return
    try:
        if not idmaps.cloned_by_template:
            _p1_fork_child(section)
    except BaseException:  # noqa: BLE001 - P1 or P2 must never return
        os._exit(255)
    if idmaps.cloned_by_template:  # the worker already (the cloned init forked it)
        # No P1; and the init keeps the host uid, which counts as the worker's only when it
        # maps to the sandbox uid (an unprivileged host).
        state.helpers_absent = 1 if section.uid_map is None or os.getuid() == section.uid else 2
        _become_sandbox_ids(section)
    # P3, the worker
    state.intermediate = False
    unignore_forwarded_signals()
    signal.pthread_sigmask(signal.SIG_SETMASK, _saved_mask)
    state.report["namespaces"] = {
        "kinds": list(section.kinds),
        "pid": os.getpid(),
        "uid": os.getuid(),
        "uid_map": (section.uid_map or "").strip(),
    }


def _p0_child(section: NamespacesSection, pid1: int, up_r: int, down_w: int, status_r: int) -> NoReturn:
    """CHILD side, P0: write P1's id maps, then wait for the worker's status and mirror it.

    The init sends the worker's wait status straight to P0, so P0 ends as
    soon as the worker has ended (P1 and the init die with it through their
    parent-death signal). Without a status (the init died), P0 mirrors P1.
    """
    msg = read_exact(up_r, 5)
    os.close(up_r)
    if msg[:1] != b"U":
        os.close(down_w)
        os.close(status_r)
        os.waitpid(pid1, 0)
        raise _unshare_failed(section, struct.unpack("i", msg[1:5])[0] if len(msg) == 5 else None)
    if section.uid_map is not None:
        try:
            _write_proc(pid1, "setgroups", section.setgroups or "deny")
            _write_proc(pid1, "uid_map", section.uid_map)
            _write_proc(pid1, "gid_map", section.gid_map or "")
        except OSError as exc:
            os.write(down_w, b"E")
            os.close(down_w)
            os.close(status_r)
            os.waitpid(pid1, 0)
            raise ConfinementError("namespaces", f"write /proc/{pid1}/{exc.filename or 'uid_map'}", exc.errno) from exc
    os.write(down_w, b"M")
    close_fds_except({status_r})
    wait_and_mirror_child(pid1, reap_all=False, status_first=status_r)


def _unshare_failed(section: NamespacesSection, err: int | None) -> ConfinementError:
    names = "|".join("CLONE_NEW" + k.upper() for k in section.kinds)
    return ConfinementError(
        "namespaces",
        f"unshare({names})",
        err,
        "unprivileged user namespaces may be disabled (user.max_user_namespaces, "
        "kernel.unprivileged_userns_clone, AppArmor userns restriction)",
    )


def _p1_unshare_child(flags: int, p0: int, up_w: int, down_r: int) -> None:
    """CHILD side, P1: unshare and wait until P0 has written the id maps."""
    gc.disable()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != p0:
        os._exit(255)
    # The zygote is not dumpable; our /proc files would then belong to root
    # and an unprivileged P0 could not write our id maps.
    prctl(PR_SET_DUMPABLE, 1)
    if libc().unshare(flags) != 0:
        os.write(up_w, b"E" + struct.pack("i", ctypes.get_errno()))
        os._exit(255)
    os.write(up_w, b"U\0\0\0\0")
    os.close(up_w)
    if read_exact(down_r, 1) != b"M":
        os._exit(255)
    os.close(down_r)
    os.chdir("/")


def _unshare_with_template_maps(section: NamespacesSection, flags: int, up_w: int, down_r: int) -> None:
    """CHILD side, P1 forked straight from the template: unshare, let the template write the maps.

    Raises :class:`ConfinementError` (reported to the host: this is its direct child).
    """
    _maps_from_template(up_w, down_r, section, flags)
    os.chdir("/")


def _maps_from_template(up_w: int, down_r: int, section: NamespacesSection | None = None, flags: int = 0) -> None:
    """CHILD side, the template's own child: unshare ``flags`` first (if any), then b"U" and
    wait for the template's b"M" (maps written). Closes both fds; raises :class:`ConfinementError`."""
    # The zygote is not dumpable; our /proc files would then belong to root
    # and an unprivileged template could not write our id maps.
    prctl(PR_SET_DUMPABLE, 1)
    try:
        if flags and libc().unshare(flags) != 0:
            err = ctypes.get_errno()
            os.write(up_w, b"E" + struct.pack("i", err))
            assert section is not None
            raise _unshare_failed(section, err)
        os.write(up_w, b"U\0\0\0\0")
        answer = read_exact(down_r, 9)
    finally:
        os.close(up_w)
        os.close(down_r)
    if answer[:1] != b"M":
        err, code = struct.unpack("ii", answer[1:9]) if len(answer) == 9 else (None, 1)
        raise ConfinementError("namespaces", f"write /proc/{os.getpid()}/{_MAP_FILES[code % 3]}", err)


def _p1_fork_child(section: NamespacesSection) -> None:
    """CHILD side, P1: switch to the sandbox ids (keeping the namespace caps), fork P2."""
    if section.uid_map is not None:
        # Inside the new user namespace this keeps every capability (the old
        # uid is not the namespace's root), but files we create from now on
        # belong to a mapped id.
        if section.setgroups == "allow":
            os.setgroups([])
        os.setresgid(section.gid, section.gid, section.gid)
        os.setresuid(section.uid, section.uid, section.uid)
        # A uid change clears the parent-death signal: set it again.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != _p0_pid:
            os._exit(255)
    hostname = section.hostname
    if hostname and "uts" in section.kinds:
        raw = hostname.encode()
        libc().sethostname(raw, len(raw))
    alive_r, alive_w = os.pipe()  # EOF on alive_r tells P2 that P1 died
    pid2 = os.fork()
    if pid2 == 0:
        os.close(alive_w)
        if _status_r >= 0:
            os.close(_status_r)
        _p2_init_child(_status_w, alive_r)
        return  # P3
    os.close(alive_r)
    if _status_r < 0:  # P0 holds the status pipe and ends first
        close_fds_except({alive_w})
        wait_and_mirror_child(pid2, reap_all=False)
    # P1 is the template's child: it reads the worker's status from the init and ends at once.
    close_fds_except({alive_w, _status_r})
    wait_and_mirror_child(pid2, reap_all=False, status_first=_status_r)


def init_cloned_child(up_w: int, down_r: int, status_w: int) -> None:
    """CHILD side, cloned by the zygote template straight into the namespaces: pid 1, the init.

    Called first thing after the clone (:func:`glsandbox_kernel.zygote._spawn`),
    before the plan is even parsed, so that the pages the two processes
    would share dirty are few: the template writes the id maps (b"U", b"M"
    on the pipes), then this process forks the worker and stays behind as
    the init: it reaps, forwards signals and writes the worker's wait status
    to ``status_w`` (the template reports it as the sandbox's exit). Returns
    only in the worker, which carries out the whole plan; it keeps the host
    uid until :func:`fork_init_child` (the mount sources are opened first).

    The template's b"M" also proves it outlived this process's parent-death
    signal (set before the b"U"). Raises :class:`ConfinementError` (the
    template's direct child reports it to the host).
    """
    global _saved_mask
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()
    _maps_from_template(up_w, down_r)
    # Forwarded signals stay blocked until the init has its forwarding handler; the worker
    # gets the original mask back in fork_init_child.
    _saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED_SIGNALS)
    worker = os.fork() if fork_hooks else clone_fork(0, hooks=False)
    if worker == 0:
        os.close(status_w)
        tiny_init.close_child()
        return  # the worker
    # The init stays dumpable (the host may read its /proc files): the worker, without
    # capabilities, cannot ptrace a process that holds more of the namespace's than it.
    # As the tiny program it holds none of the template's pages; where that cannot run
    # (another machine, no memfd exec), it goes on as Python.
    tiny_init.exec_child(status_w)
    close_fds_except({status_w})
    wait_and_mirror_child(worker, reap_all=True, status_out=status_w)


def _become_sandbox_ids(section: NamespacesSection) -> None:
    """CHILD side, the worker below a cloned init: switch to the sandbox ids, set the hostname."""
    if section.uid_map is not None:
        try:
            if section.setgroups == "allow":
                os.setgroups([])
            os.setresgid(section.gid, section.gid, section.gid)
            os.setresuid(section.uid, section.uid, section.uid)
        except OSError as exc:
            raise ConfinementError(
                "namespaces", f"setresuid({section.uid}) in the new user namespace", exc.errno
            ) from exc
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change; the init is the parent
    hostname = section.hostname
    if hostname and "uts" in section.kinds:
        raw = hostname.encode()
        libc().sethostname(raw, len(raw))


def _p2_init_child(status_w: int, alive_r: int) -> None:
    """CHILD side, P2 = pid 1: fork the worker, then reap and forward; returns only in P3."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    poller = select.poll()  # not select.select: the fd may be past 1023 in a host with many sessions
    poller.register(alive_r, select.POLLIN)
    if poller.poll(0):  # P1 already gone
        os._exit(255)
    pid3 = os.fork()
    if pid3 == 0:
        os.close(status_w)
        os.close(alive_r)
        gc.enable()
        return  # P3: the worker
    close_fds_except({status_w})
    wait_and_mirror_child(pid3, reap_all=True, status_out=status_w)
