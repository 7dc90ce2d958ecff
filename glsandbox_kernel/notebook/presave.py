"""Jupyter server extension: a pre-save hook that keeps a saved notebook's evidence whole (host side).

Who calls: the Jupyter server. ``jupyter-config/jupyter_server_config.d/glsandbox.json``
(installed to ``etc/jupyter/jupyter_server_config.d``) enables this module
as a server extension (``ServerApp.jpserver_extensions``: config files there
are read by the server, but only extensions are loaded from them);
:func:`_load_jupyter_server_extension` then registers :func:`pre_save_hook`
on the server's contents manager. It runs in the server, never in a kernel
or the sandbox, and only reads what the outputs hold.

On each save of a notebook with audit outputs it writes
``cell.metadata["glsandbox"]`` (the same second copy ``glsandbox run``
writes), records each session's chain head in
``notebook.metadata["glsandbox"]["sessions"]`` and re-seals the notebook
(:mod:`.seal`), signed when the server has a key (``$GLSANDBOX_AUDIT_KEY``:
an HMAC secret or a PEM Ed25519 private key) and only when every cell record
verifies with that key (:func:`records_vouched`: the server signs what the
browser sent, so it vouches only for records a kernel holding its key made);
the seal says it was made here (``sealed_by``: the server at save time, not a
``glsandbox run``). Without a key, a signed seal
whose notebook did not change is kept as it was (a JupyterLab Ctrl+S of a
``glsandbox run`` output stays verifiable with the run's key); a changed
notebook gets an unsigned seal. A failure of the sealing never prevents the
save (the server logs it).

It also keeps the server from writing through a link a sandboxed cell
planted: at LENIENT a cell can write the project folder, so it can replace
the notebook, its folder or ``.ipynb_checkpoints`` with a symbolic link to a
host file, and jupyter_server's writer follows such links. The hook refuses
(HTTP 403, shown by JupyterLab as a save error) a save whose path below the
server's root has a symbolic link, or a target that is not a regular file;
and the extension replaces the contents manager's writer, its large-file
appender and its checkpoints' copy with ones that walk from the root with
``O_NOFOLLOW`` on each component, write a fresh file in the directory they
hold open and rename it over the name, so a link swapped in after the check
is replaced, never written through. Reads, renames, copies and deletes get
the same walk from :mod:`.server_links`, done on the folders it holds by
:mod:`.server_ops` (installed here too, with ``/files/`` served through the
guarded reader).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import errno
import inspect
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping, MutableMapping
from typing import IO, Any

from tornado.web import HTTPError

from .server_links import SAVED, _open_parent, _parts_below, _refuse, guard_contents, guard_files, held, lstat_in
from .server_ops import install as install_ops

log = logging.getLogger("glsandbox.presave")


def copy_audit_records(nb: MutableMapping[str, Any], key: bytes | None = None) -> int:
    """Copy audit records into cell and notebook metadata and re-seal; returns the cells updated."""
    from ..audit.keys import signer_from_bytes
    from .metadata import cell_metadata, collect_records, session_heads
    from .seal import METADATA_KEY, copy_seal_to_cells, seal_digest, seal_notebook

    meta = nb.setdefault("metadata", {})
    before = copy.deepcopy(meta.get(METADATA_KEY)) if isinstance(meta.get(METADATA_KEY), Mapping) else None
    updated = 0
    for cell in nb.get("cells") or []:
        if not isinstance(cell, MutableMapping) or cell.get("cell_type") != "code":
            continue
        fresh = cell_metadata(cell)
        if fresh is None:
            continue
        cell.setdefault("metadata", {})[METADATA_KEY] = fresh
        updated += 1
    if not updated:
        return 0
    records = collect_records(_Cells(nb))
    nb_meta = meta.setdefault(METADATA_KEY, {})
    nb_meta["sessions"] = session_heads(records)
    nb_meta["records"] = len(records)
    signer = signer_from_bytes(key) if key else None
    old_seal = before.get("seal") if before is not None else None
    if signer is None and isinstance(old_seal, Mapping) and old_seal.get("signature"):
        from .seal import manifest

        stored = before.get("manifest") if before is not None else None
        nb_meta["manifest"] = manifest(nb, stored.get("format") if isinstance(stored, Mapping) else None)
        nb_meta["signed"] = before.get("signed", True) if before is not None else True
        if seal_digest(nb_meta) == old_seal.get("digest"):
            nb_meta["seal"] = dict(old_seal)  # unchanged since it was signed: keep the signature
            copy_seal_to_cells(nb, old_seal)
            return updated
    if signer is not None and not records_vouched(records, signer):
        signer = None  # the server's key vouches only for records a kernel with that key signed
    nb_meta["sealed_by"] = {
        "by": SEALED_BY,
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "note": "sealed when the server saved what the frontend sent; not a 'glsandbox run'",
    }
    nb_meta["signed"] = signer is not None
    seal_notebook(nb, signer)
    return updated


SEALED_BY = "jupyter-server pre-save hook"


def records_vouched(records: list[dict[str, Any]], signer: Any) -> bool:
    """True when every record's hash is its own and its signature verifies with ``signer``'s key.

    The server signs only what a kernel holding the same key signed: a notebook whose
    records are unsigned, or signed with another key (pasted, or made up in the
    browser), gets an unsigned seal, so the server's key never presents it as evidence.
    """
    from ..audit.records import checked_record_hash

    verifier = signer.verifier()
    for record in records:
        stored, signature = record.get("record_hash"), record.get("signature")
        if not isinstance(stored, str) or not isinstance(signature, str) or checked_record_hash(record) != stored:
            return False
        if not verifier.verify(stored.encode("ascii", "replace"), signature):
            return False
    return bool(records)


class _Cells:
    """Attribute access to a plain-dict notebook's cells (what ``collect_records`` expects)."""

    def __init__(self, nb: MutableMapping[str, Any]) -> None:
        self.cells = nb.get("cells") or []


def pre_save_hook(model: MutableMapping[str, Any], path: str = "", contents_manager: Any = None, **kwargs: Any) -> None:
    """The contents manager's pre-save hook: see the module docstring.

    Raises ``tornado.web.HTTPError`` (403) when the path has a planted link: the save is refused.
    """
    if contents_manager is not None:
        check_save_path(contents_manager, path, str(model.get("type")))
    if model.get("type") != "notebook":
        return
    content = model.get("content")
    if not isinstance(content, MutableMapping):
        return
    from ..audit.log import load_key

    try:
        key = load_key()
    except (OSError, ValueError):
        key = None
    updated = copy_audit_records(content, key)
    if updated:
        log.debug("glsandbox: copied audit records of %d cell(s) into the metadata of %s", updated, path)


# -- saves never follow a link below the server root (server side) -----------------------------


def _check_entry(dir_fd: int, name: str, rel: str, directory: bool = False) -> os.stat_result | None:
    """The lstat of ``name`` in ``dir_fd`` (None if absent); refuses a link or anything but a regular file."""
    st = lstat_in(dir_fd, name, rel, SAVED)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        _refuse(rel, f"{rel} is a symbolic link a sandboxed cell may have planted")
    if not (stat.S_ISREG(st.st_mode) or (directory and stat.S_ISDIR(st.st_mode))):
        _refuse(rel, f"{rel} is not a regular file")
    return st


def _check_path(root: str, os_path: str, directory: bool = False, new_folder_ok: bool = False) -> None:
    """Refuse a link or an unchecked folder on the way to ``os_path``; ``new_folder_ok``: its folder may not exist yet."""
    try:
        found = held(root, os_path, SAVED)
    except HTTPError as e:
        if new_folder_ok and e.status_code == 404:
            return  # a checkpoint folder made by this save: the writers walk again and refuse a link
        raise
    if found is not None:
        try:
            _check_entry(*found, directory=directory)
        finally:
            os.close(found[0])


def check_save_path(manager: Any, path: str, kind: str) -> None:
    """Refuse (HTTP 403) a save of ``path`` through a link: the target and, for files, its checkpoint.

    Called by :func:`pre_save_hook` in the server, before anything is written. Fails
    closed: a folder of the path that cannot be walked (execute-only, unreadable, not a
    folder) is a 403, a missing one a 404; only the last component may be missing.
    """
    get_os_path = getattr(manager, "_get_os_path", None)
    root = getattr(manager, "root_dir", None)
    if get_os_path is None or not isinstance(root, str):
        return  # not a file-system contents manager
    os_path = get_os_path(path.strip("/"))
    _check_path(root, os_path, directory=kind == "directory")
    cp_dir = getattr(getattr(manager, "checkpoints", None), "checkpoint_dir", None)
    if kind != "directory" and isinstance(cp_dir, str):
        base, ext = os.path.splitext(os.path.basename(os_path))
        cp = os.path.join(os.path.dirname(os_path), cp_dir, f"{base}-checkpoint{ext}")
        _check_path(root, cp, new_folder_ok=True)


@contextlib.contextmanager
def _write_below(
    root: str, os_path: str, text: bool, encoding: str, newline: str | None, atomic: bool = True
) -> Iterator[IO[Any]]:
    """Write ``os_path`` (below ``root``) as a fresh file renamed over its name, never through a link.

    ``atomic`` False (``use_atomic_writing`` off), or a folder the server cannot
    write: the file is rewritten in place, as jupyter_server does, opened with ``O_NOFOLLOW``.
    """
    found = _open_parent(root, os_path)
    assert found is not None
    dir_fd, name, rel = found
    try:
        old = _check_entry(dir_fd, name, rel)
        tmp: str | None = f".{name}.glsandbox-{secrets.token_hex(6)}~" if atomic or old is None else None
        fd = -1
        if tmp is not None:
            try:
                fd = os.open(
                    tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd
                )
            except PermissionError:
                if old is None:
                    raise
                tmp = None
            else:
                if old is not None:
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
        if tmp is None:
            fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode) or now.st_nlink != 1:
                os.close(fd)
                _refuse(rel, f"{rel} is not a regular file with one name (a hard link?)")
            os.ftruncate(fd, 0)
        f = os.fdopen(fd, "w", encoding=encoding, newline=newline) if text else os.fdopen(fd, "wb")
        try:
            with f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            if tmp is not None:
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # a link swapped in is replaced
                tmp = None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


class _Guard:
    """The writers installed on a file contents manager and its checkpoints (server side)."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.atomic_writing = owner.atomic_writing  # jupyter_server's, for paths outside the root

    def root(self) -> str:
        return os.path.abspath(str(self.owner.root_dir))

    @contextlib.contextmanager
    def writing(self, os_path: str, text: bool = True, encoding: str = "utf-8", **kwargs: Any) -> Iterator[IO[Any]]:
        """Replaces ``owner.atomic_writing`` (its ``perm_to_403`` kept)."""
        if _parts_below(self.root(), os_path) is None:
            with self.atomic_writing(os_path, text=text, encoding=encoding, **kwargs) as f:
                yield f
            return
        atomic = bool(getattr(self.owner, "use_atomic_writing", True))
        with (
            self.owner.perm_to_403(os_path),
            _write_below(self.root(), os_path, text, encoding, kwargs.get("newline", "\n"), atomic) as f,
        ):
            yield f

    def copy(self, src: str, dest: str) -> None:
        """Replaces the checkpoints' ``_copy``: neither end may be a link below the root."""
        with self.owner.perm_to_403(src):
            found = _open_parent(self.root(), src)
            if found is None:
                fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            else:
                try:
                    fd = os.open(found[1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=found[0])
                except OSError as e:
                    if e.errno == errno.ELOOP:
                        _refuse(found[2], f"{found[2]} is a symbolic link a sandboxed cell may have planted")
                    raise
                finally:
                    os.close(found[0])
            with os.fdopen(fd, "rb") as source:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    _refuse(src, "the source is not a regular file")
                with self.writing(dest, text=False) as f:
                    shutil.copyfileobj(source, f)
                    f.flush()
                    os.utime(f.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))

    async def copy_async(self, src: str, dest: str) -> None:
        from anyio.to_thread import run_sync

        await run_sync(self.copy, src, dest)

    def append(self, os_path: str, content: str, format: str) -> None:
        """Replaces the large-file manager's ``_save_large_file`` (chunks after the first)."""
        if format not in {"text", "base64"}:
            raise HTTPError(400, "Must specify format of file contents as 'text' or 'base64'")
        try:
            data = content.encode("utf8") if format == "text" else base64.b64decode(content.encode("ascii"))
        except Exception as e:
            raise HTTPError(400, f"Encoding error saving {os_path}: {e}") from e
        with self.owner.perm_to_403(os_path):
            found = _open_parent(self.root(), os_path)
            if found is None:
                _refuse(os_path, "outside the server root")
            dir_fd, name, rel = found
            try:
                _check_entry(dir_fd, name, rel)
                fd = os.open(
                    name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
                )
            except OSError as e:
                if e.errno == errno.ELOOP:
                    _refuse(rel, f"{rel} is a symbolic link a sandboxed cell may have planted")
                raise
            finally:
                os.close(dir_fd)
            with os.fdopen(fd, "ab") as f:
                if os.fstat(fd).st_nlink != 1:
                    _refuse(rel, f"{rel} has more than one name (a hard link?)")
                f.write(data)

    async def append_async(self, os_path: str, content: str, format: str) -> None:
        from anyio.to_thread import run_sync

        await run_sync(self.append, os_path, content, format)


def guard_writers(manager: Any) -> list[str]:
    """Install the link-refusing writers on ``manager`` and its file checkpoints; returns what was guarded.

    Called by :func:`_load_jupyter_server_extension`; a contents manager that
    is not jupyter_server's file manager keeps its writers (the hook still checks).
    """
    from jupyter_server.services.contents.filecheckpoints import FileCheckpoints
    from jupyter_server.services.contents.fileio import FileManagerMixin

    done: list[str] = []
    if isinstance(manager, FileManagerMixin):
        guard = _Guard(manager)
        manager.atomic_writing = guard.writing  # type: ignore[method-assign]
        done.append("writes")
        large = getattr(manager, "_save_large_file", None)
        if large is not None:
            append = guard.append_async if inspect.iscoroutinefunction(large) else guard.append
            manager._save_large_file = append  # type: ignore[attr-defined]
            done.append("large-file chunks")
    checkpoints = getattr(manager, "checkpoints", None)
    if isinstance(checkpoints, FileCheckpoints):
        cp_guard = _Guard(checkpoints)
        checkpoints.atomic_writing = cp_guard.writing  # type: ignore[method-assign]
        copy_ = checkpoints._copy
        checkpoints._copy = cp_guard.copy_async if inspect.iscoroutinefunction(copy_) else cp_guard.copy  # type: ignore[method-assign]
        done.append("checkpoints")
    return done


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Entry point the Jupyter server looks for in an enabled extension module."""
    return [{"module": "glsandbox_kernel.notebook.presave"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Called by the Jupyter server at start-up: register :func:`pre_save_hook`, guard the writers."""
    manager = serverapp.contents_manager
    register = getattr(manager, "register_pre_save_hook", None)
    if register is not None:
        register(pre_save_hook)
    else:  # older jupyter_server: one hook only
        manager.pre_save_hook = pre_save_hook
    guarded = guard_writers(manager)
    held_ops = install_ops(manager)  # deletes, renames, copies on held folders; the checks go before them
    reads = guard_contents(manager)
    if guard_files(serverapp):
        reads.append("/files/")
    serverapp.log.info(
        "glsandbox: pre-save hook registered (audit records copied into cell metadata on save; saves through "
        "a symbolic link refused; link-safe writers for %s; held-folder operations for %s; link checks for %s)",
        ", ".join(guarded) or "nothing: not a file contents manager",
        ", ".join(held_ops) or "nothing: not a file contents manager",
        ", ".join(reads) or "nothing: not a file contents manager",
    )


__all__ = ["SEALED_BY", "check_save_path", "copy_audit_records", "guard_writers", "pre_save_hook", "records_vouched"]
