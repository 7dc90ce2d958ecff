"""The analyst's project folder and the Python environment, as the sandbox sees them (HOST side).

Who calls: :class:`~glsandbox_kernel.config.FilesystemConfig` (validation of ``project_dir``), the kernel,
the magic and the CLI (the default project folder), and the confinement planners (:mod:`.confinement.mounts`,
BASIC's Landlock rules): they ask :func:`project_layout` what to show, :func:`environment_paths` the interpreter.

Nothing here depends on the host process's state beyond the interpreter
itself: not ``sys.path``, not the working directory, not ``PYTHONPATH``.
"""

from __future__ import annotations

import functools
import os
import pwd
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .exceptions import SandboxConfigError
from .pyenv import PREFIX_CREDENTIALS, PythonEnvironment, compute_environment
from .treewalk import DOOR_TYPES, TreeWalk, is_door, is_masked, mask_matcher

if TYPE_CHECKING:  # config imports this module to validate project_dir: no runtime import back
    from .config import OSSandboxConfig

#: Folders that are never a project folder (nor any folder below them).
_SYSTEM_TREES = tuple(
    "/etc /usr /bin /sbin /lib /lib32 /lib64 /libx32 /proc /sys /dev /run /boot /var/run /var/lib /var/log".split()
)
#: System trees a named folder is not walked in (program files); /run, /var/lib, /etc, /dev hold sockets: walked
_DOORLESS_TREES = tuple("/usr /bin /sbin /lib /lib32 /lib64 /libx32 /boot /proc /sys".split())
#: Folders that are never a project folder themselves (shared by everyone), though a folder below may be.
_SHARED_DIRS = ("/", "/tmp", "/var", "/var/tmp", "/dev/shm", "/home", "/root", "/opt", "/srv", "/mnt", "/media")
#: The sandbox's host ids as root where the project has no user owner (``confinement.profile.UNPRIVILEGED_HOST_ID``).
NOBODY_ID = 65534
#: How many directory entries a scan for masked names may visit before it refuses.
SCAN_BUDGET = 100_000


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


@functools.lru_cache(maxsize=1)
def _homes() -> frozenset[str]:
    homes = {os.path.realpath(os.path.expanduser("~"))}
    try:
        homes.update(os.path.realpath(p.pw_dir) for p in pwd.getpwall() if p.pw_dir and p.pw_dir != "/")
    except OSError:
        pass
    return frozenset(homes)


def project_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be a project folder (it would show too much), or None.

    Refused: ``/``, system trees (``/etc``, ``/usr``, ``/proc`` ...), shared
    folders themselves (``/tmp``, ``/home``, ``/opt`` ...), a user's home
    folder itself or any folder above one. A folder *below* a home or /tmp
    is fine: that is where projects live.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        return f"{path!r} must be an absolute path"
    real = os.path.realpath(path)
    if real in _SHARED_DIRS:
        return f"{real} is shared by the whole system; name the folder of your notebook instead"
    for tree in _SYSTEM_TREES:
        if _under(real, tree):
            return f"{real} is a system folder ({tree}); name the folder of your notebook instead"
    for home in _homes():
        if _under(home, real):
            return f"{real} holds a home folder ({home}); name a project folder inside it instead"
    return None


def default_project_dir(cwd: str | None = None) -> str | None:
    """The project folder for a kernel, script or magic started in ``cwd`` (default: the current one).

    None when that folder cannot be a project folder (see :func:`project_dir_problem`):
    the sandbox then shows no folder of the host at all.
    """
    try:
        path = os.path.realpath(cwd or os.getcwd())
    except OSError:
        return None
    return None if project_dir_problem(path) else path


def find_masked(
    root: str, patterns: tuple[str, ...], *, budget: int = SCAN_BUDGET, skip: Iterable[str | None] = ()
) -> list[tuple[str, str]]:
    """Every real file or folder below ``root`` whose name matches ``patterns``, and every Unix socket
    and FIFO (a host process's door) and device node: ``(path, "file"|"dir")``.

    Walks without following symlinks (a symlink is resolved inside the
    sandbox, where its target is masked or absent); does not descend into a
    match, nor into ``skip`` (scanned on their own) or a folder of the Python environment
    (a venv inside the project; :func:`environment_masks` checks what of it is a user's).
    Raises :class:`SandboxConfigError` when the folder has more than
    ``budget`` entries (a folder that large cannot be checked for secrets).
    """
    out = set(environment_paths()) | set(skip)
    masked = mask_matcher(tuple(patterns))
    walk = TreeWalk([root], budget, lambda e: e.path not in out and not masked(e.name))
    found: list[tuple[str, str]] = []
    for entry, kind in walk:
        if kind in DOOR_TYPES or (kind != stat.S_IFLNK and masked(entry.name)):
            try:  # its own lstat, as before the type came from the listing: one that cannot be passed over
                kind = stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)
            except OSError:
                continue
            found.append((entry.path, "dir" if kind == stat.S_IFDIR else "file"))
    if not walk.complete:
        raise SandboxConfigError(
            "filesystem",
            f"{root} has more than {budget} files and folders; it cannot be checked for secrets. "
            "Name a smaller folder (or add its large subfolders to readonly_paths instead)",
        )
    found.sort()
    return found


@dataclass(frozen=True)
class ProjectLayout:
    """What one sandbox shows of the project folder (built by :func:`project_layout`).

    ``readonly``/``writable``: folders shown at their own path. ``workdir``:
    the project folder when it is shown (its imports work), else None.
    ``cwd``: the working directory inside: the project folder's path even when
    it is hidden (STRICT: an empty read-only folder, so a relative write fails
    loudly instead of landing in a scratch directory), None without a project. ``masked``: real paths hidden
    inside any shown folder. ``owner``: (uid, gid) of the project folder. ``notes``: what the
    sandbox's report should say (secrets masked in the output folder, folders hidden as too large).
    """

    project: str | None
    access: str
    workdir: str | None
    readonly: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    output_dir: str | None = None
    masked: tuple[tuple[str, str], ...] = ()
    owner: tuple[int, int] | None = None
    visible: tuple[str, ...] = field(default=())
    cwd: str | None = None
    notes: tuple[str, ...] = ()


#: The kernel's check of its implicit project (``keep=True``): taken once by the first start of that very
#: config (the same FilesystemConfig object) within KEEP_S, a bound for a start that failed before taking it.
_kept: dict[int, tuple[float, object, str, ProjectLayout]] = {}
KEEP_S = 30.0
#: The walks of the last kept check by (root, patterns, skip), each taken once within KEEP_S by the same walk of
#: a start of that very config: CONTAINER's :func:`container_masks` walks what the kernel's check walked.
_kept_walks: dict[tuple[str, tuple[str, ...], tuple[str | None, ...]], tuple[float, object, list[tuple[str, str]]]] = {}


def _walk(
    fs: object,
    root: str,
    patterns: tuple[str, ...],
    skip: tuple[str | None, ...] = (),
    *,
    keep: bool = False,
    was: tuple = (),
) -> list[tuple[str, str]]:
    """:func:`find_masked`, kept (``keep``) for, or taken from, a kept check of ``fs`` (a FilesystemConfig): its
    walk of the same folder (or of the same folder with the skips ``was``: an output folder created since, empty,
    walked on its own)."""
    key = (root, tuple(patterns), skip)
    kept = _kept_walks.pop(key, None) or (_kept_walks.pop((root, tuple(patterns), was), None) if was else None)
    if kept is not None and not keep and kept[1] is fs and time.monotonic() - kept[0] <= KEEP_S:
        return list(kept[2])
    found = find_masked(root, patterns, skip=skip)
    if keep:
        _kept_walks[key] = (time.monotonic(), fs, list(found))
    return found


def project_layout(config: OSSandboxConfig, *, create_output: bool = False, keep: bool = False) -> ProjectLayout:
    """HOST side: the project folder, user paths, output folder and masks for ``config`` (an OSSandboxConfig).

    ``create_output``: create the MODERATE output folder (owned by the project folder's owner) if missing;
    planners pass True only when they start a real worker, and take a layout kept for it unless it lacks one.
    """
    fs, access = config.filesystem, config.project_access
    kept = _kept.pop(id(fs), None) if create_output else None
    if kept is not None and kept[1] is fs and kept[2] == access and time.monotonic() - kept[0] <= KEEP_S:
        if kept[3].output_dir or not (fs.output_dir and access == "read"):
            return kept[3]
    if keep:
        _kept_walks.clear()
    layout = _scan_layout(config, create_output=create_output, keep=keep)
    if keep:
        _kept[id(fs)] = (time.monotonic(), fs, access, layout)
    return layout


def _scan_layout(config: OSSandboxConfig, *, create_output: bool, keep: bool = False) -> ProjectLayout:
    fs = config.filesystem
    access = config.project_access
    project = os.path.realpath(fs.project_dir) if fs.project_dir else None
    readonly = [os.path.realpath(p) for p in fs.readonly_paths]
    writable = [os.path.realpath(p) for p in fs.writable_paths]
    owner = None
    output = None
    made = False
    if project is not None:
        try:
            st = os.stat(project)
            owner = (st.st_uid, st.st_gid)
        except OSError as exc:
            raise SandboxConfigError("project_dir", f"{project}: {exc.strerror}") from exc
        if access == "write":
            writable.insert(0, project)
        elif access == "read":
            readonly.insert(0, project)
            if fs.output_dir:
                output = os.path.join(project, fs.output_dir)
                if create_output and not os.path.lexists(output):
                    made = _make_output_dir(output, owner)
                if os.path.isdir(output) and not os.path.islink(output):
                    writable.append(os.path.realpath(output))
                else:
                    output = None
    masked: list[tuple[str, str]] = []
    notes: list[str] = []
    was = (None,) if made and output is not None else ()  # the kernel's check walked the project before it
    own = output = os.path.realpath(output) if output else None
    if output is not None:  # the sandbox's own folder: its own scan and budget, never a refusal
        try:
            masked += _walk(fs, output, fs.masked_names, keep=keep)
        except SandboxConfigError:
            masked.append((output, "dir"))
            writable.remove(output)
            notes.append(f"{output} has more than {SCAN_BUDGET} entries: hidden and read-only this session")
            output = None
        if masked and output is not None:
            notes.append(f"masked in the output folder: {', '.join(p for p, _ in masked)[:300]}")
    visible = tuple(dict.fromkeys(readonly + writable))
    workdir = None
    if project is not None and any(_under(project, v) for v in visible):
        workdir = project
    scanned: list[str] = []
    for v in visible:
        if not _needs_scan(v, fs.masked_names) or v == output:
            continue
        # A folder inside one walked already was walked with it: every entry below it was seen,
        # unless it lies in a masked folder (not entered).
        if any(_under(v, s) for s in scanned) and not any(_under(v, m) for m, _ in masked):
            continue
        scanned.append(v)
        masked += [m for m in _walk(fs, v, fs.masked_names, (own,), keep=keep, was=was) if m not in masked]
    masked += [m for m in environment_masks(fs.masked_names, notes) if m not in masked]
    return ProjectLayout(
        project=project,
        access=access,
        workdir=workdir,
        readonly=tuple(dict.fromkeys(readonly)),
        writable=tuple(dict.fromkeys(writable)),
        output_dir=output,
        masked=tuple(masked),
        owner=owner,
        visible=visible,
        cwd=project,
        notes=tuple(notes),
    )


def _needs_scan(path: str, patterns: tuple[str, ...]) -> bool:
    """HOST side, for a shown host path: refuses a masked folder (or one inside it), a masked file or a door
    named whole; True for a user's folder to walk (system and package trees hold no user secrets, and are huge)."""
    refuse_masked_folder(path, patterns)
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) and (is_door(st.st_mode) or is_masked(os.path.basename(path), patterns)):
        raise SandboxConfigError("readonly_paths", f"{path}: a masked name, socket, FIFO or device: never shown")
    return stat.S_ISDIR(st.st_mode) and not any(_under(path, t) for t in _DOORLESS_TREES + python_environment().trusted)


def refuse_named_secrets(field: str, path: str, patterns: tuple[str, ...], *, scan: bool = True) -> None:
    """HOST side, for CONTAINER, which binds a named path whole (no mask inside): refuses what :func:`project_layout`
    refuses and, with ``scan``, a folder holding masked names or doors (``readonly_paths``, ``writable_paths``)."""
    found = find_masked(path, patterns) if _needs_scan(path, patterns) and scan else []
    if found:
        why = f"{', '.join(p for p, _ in found[:5])[:300]}, which this backend cannot hide (masked_names, sockets)"
        raise SandboxConfigError(field, f"{path} holds {why}: name a folder without them, or use isolation namespace")


def refuse_masked_folder(path: str, patterns: tuple[str, ...]) -> None:
    """Refuse a shown folder or file that is, or lies inside, one with a masked name (``~/.ssh``, ``~/.aws``):
    names are matched inside shown folders, so its own contents (``credentials``, ``config``) would show."""
    # Only the names of hidden folders (".ssh", ".aws") or names given whole ("jupyter_runtime"):
    # a wildcard pattern for key files ("id_*", "*.key") says nothing of a folder "id_mapping".
    folder_patterns = tuple(p for p in patterns if p.startswith(".") or not any(c in p for c in "*?["))
    for part in path.strip("/").split("/"):
        if is_masked(part, folder_patterns):
            raise SandboxConfigError(
                "readonly_paths", f"{path}: {part!r} matches masked_names; it is never shown, nor anything in it"
            )


def environment_masks(patterns: tuple[str, ...], notes: list[str]) -> list[tuple[str, str]]:
    """HOST side, at every start: what to hide of the Python environment (:mod:`.pyenv`).

    Masked names inside the packages taken from an editable checkout (one
    too large to check is hidden whole, with a note, never a refusal), such a package
    whose name is masked, and credential files at the top of the
    environment's prefixes (a venv's ``pip.conf`` with an index URL, conda's
    ``.condarc`` with channel tokens, masked names).
    """
    env = python_environment()
    found: list[tuple[str, str]] = []
    for path in env.editable:
        if is_masked(os.path.basename(path), patterns):
            found.append((path, "dir" if os.path.isdir(path) else "file"))
        elif os.path.isdir(path):
            try:
                found += find_masked(path, patterns)
            except SandboxConfigError:
                found.append((path, "dir"))
                notes.append(f"{path} (an editable install) has too many entries to check for secrets: hidden")
    for prefix in env.prefixes:
        if any(_under(prefix, t) for t in _SYSTEM_TREES):
            continue
        try:
            entries = list(os.scandir(prefix))
        except OSError:
            continue
        for e in entries:
            if not e.is_symlink() and is_masked(e.name, patterns + PREFIX_CREDENTIALS):
                found.append((e.path, "dir" if e.is_dir(follow_symlinks=False) else "file"))
    return found


def container_masks(config: OSSandboxConfig) -> tuple[list[tuple[str, str]], str | None]:
    """HOST side, for a backend that cannot hide single names (CONTAINER shows the project whole):
    the project's masked entries outside its output folder, and the output folder (relative) when
    it must be hidden whole: it holds masked names or too many entries (the sandbox's own folder:
    what a cell left there never hides the project)."""
    fs = config.filesystem
    project = os.path.realpath(str(fs.project_dir))
    out = os.path.join(project, fs.output_dir) if fs.output_dir and config.project_access == "read" else None
    if out is None or os.path.islink(out) or not os.path.isdir(out):
        return _walk(fs, project, fs.masked_names, (None,)), None
    try:
        hide = bool(_walk(fs, out, fs.masked_names))
    except SandboxConfigError:
        hide = True
    return _walk(fs, project, fs.masked_names, (out,)), str(fs.output_dir) if hide else None


def layout_for(ctx: object) -> ProjectLayout:
    """HOST side: the layout of a confinement :class:`~.confinement._common.PlanContext`, computed once."""
    cached = getattr(ctx, "project", None)
    if isinstance(cached, ProjectLayout):
        return cached
    layout = project_layout(ctx.config, create_output=True)  # type: ignore[attr-defined]
    ctx.project = layout  # type: ignore[attr-defined]
    if layout.notes:  # the confinement report (the audit's start record)
        ctx.report["project"] = "; ".join(layout.notes)  # type: ignore[attr-defined]
    return layout


def writer_ids(layout: ProjectLayout) -> tuple[int, int] | None:
    """HOST side, as root: the host ids the sandbox runs as -- the owner of the shown project
    folder (read-only or writable), else of the writable folder -- only when that owner is not root.

    Mapped to a user's ids, the sandbox holds what a rootless sandbox of that user holds: no
    more; so a 0700 folder of that user is entered, and its files are written as that user.
    A root-owned folder is never mapped to root: a read-only one is shown through an idmapped
    bind (:func:`glsandbox_kernel.confinement.idmaps.idmapped_tree`), a writable one stays
    written as uid 65534, so writes there fail loudly (EACCES) unless its modes allow them
    (a writable idmapped mount of root-owned files would let the sandbox create setuid files).
    """
    if os.geteuid() != 0:
        return None
    project, owner = layout.project, layout.owner
    if project is not None and owner is not None:
        inside = [w for w in layout.writable if _under(w, project)]
        if inside or (layout.workdir is not None and owner[0] != 0 and len(inside) == len(layout.writable)):
            return owner if owner[0] != 0 else None
    if not layout.writable:
        return None
    try:
        st = os.stat(layout.writable[0])
    except OSError:
        return None
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def _make_output_dir(path: str, owner: tuple[int, int] | None) -> bool:
    """HOST side: create the output folder (0755), owned like the project folder, so the sandbox,
    which writes as the project's owner (:func:`writer_ids`), writes it; as root with a root-owned
    project, owned by the sandbox's own host ids (65534): written by it, never world-writable, and a
    fresh folder of uid 65534 holds no root file (no setuid-root file can be made there). Where it
    cannot be created (a read-only project on the host), there is none: writes into it fail loudly.
    """
    try:
        os.mkdir(path, 0o755)
        if owner is not None and os.geteuid() == 0:
            os.chown(path, *(owner if owner[0] != 0 else (NOBODY_ID, NOBODY_ID)))
    except OSError:
        return False
    return True


def output_dir_problem(config: OSSandboxConfig) -> str | None:
    """HOST side: why the sandbox cannot write the existing output folder (a kernel notice), or None."""
    fs = config.filesystem
    if not (fs.project_dir and fs.output_dir) or config.project_access != "read":
        return None
    path = os.path.join(os.path.realpath(fs.project_dir), fs.output_dir)
    try:
        pst, st = os.stat(fs.project_dir), os.stat(path)
    except OSError:
        return None
    uid, gid = (pst.st_uid, pst.st_gid) if pst.st_uid != 0 else (NOBODY_ID, NOBODY_ID)
    if os.geteuid() != 0:  # the sandbox writes as this user
        uid, gid, ok = os.geteuid(), os.getegid(), os.access(path, os.W_OK | os.X_OK)
    else:
        ok = any(
            st.st_mode & b == b for b, who in ((0o300, st.st_uid == uid), (0o030, st.st_gid == gid), (3, 1)) if who
        )
    if ok or not stat.S_ISDIR(st.st_mode):
        return None
    why = "the project folder is owned by root, so " if pst.st_uid == 0 and uid == NOBODY_ID else ""
    return (
        f"{path} is not writable by the sandbox: owned by uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}, and {why}"
        f"the sandbox writes as uid {uid}; fix: chown {uid}:{gid} {path} (or remove it: the kernel then creates it "
        "writable), or chown the project folder to a user"
    )


@functools.lru_cache(maxsize=1)
def python_environment() -> PythonEnvironment:
    """HOST side: this process's Python environment (:mod:`.pyenv`), computed once."""
    return compute_environment(lambda d: project_dir_problem(d) is None)


def environment_paths() -> list[str]:
    """HOST side: what the sandbox is shown of the Python environment, whole, outermost first."""
    return list(python_environment().shown)


def environment_listed() -> list[str]:
    """HOST side: the user's folders the environment shows only some entries of (listable)."""
    return list(python_environment().listed)


def writable_roots(config: OSSandboxConfig) -> tuple[str, ...]:
    """HOST side: the host folders the sandbox may write into (no scan, no creation)."""
    fs = config.filesystem
    roots = [os.path.realpath(p) for p in fs.writable_paths]
    if fs.project_dir:
        project = os.path.realpath(fs.project_dir)
        if config.project_access == "write":
            roots.insert(0, project)
        elif config.project_access == "read" and fs.output_dir:
            roots.append(os.path.join(project, fs.output_dir))
    return tuple(dict.fromkeys(roots))


def landlock_grants(folder: str, masked: tuple[tuple[str, str], ...]) -> tuple[list[str], list[str]]:
    """HOST side, for Landlock (BASIC), which grants whole trees: ``(list_only, grant)`` for ``folder``.

    Without a masked path below it the folder is granted whole. Otherwise it
    is only listable, and each of its entries is granted on its own, split
    the same way where a masked path lies deeper; masked entries and
    symlinks (resolved by the kernel, perhaps outside) get no rule.
    """
    if any(p == folder for p, _ in masked):
        return [], []
    hits = [p for p, _ in masked if _under(p, folder) and p != folder]
    if not hits:
        return [], [folder]
    list_only: list[str] = [folder]
    grant: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return list_only, grant
    for entry in entries:
        path = entry.path
        if path in hits or entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False) and any(_under(h, path) for h in hits):
            sub_list, sub_grant = landlock_grants(path, masked)
            list_only += sub_list
            grant += sub_grant
        else:
            grant.append(path)
    return list_only, grant
