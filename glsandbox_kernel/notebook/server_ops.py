"""Jupyter server extension, third part: deletes, renames, folder copies and new folders done on held folders.

Who calls: :func:`.server_links.guard_contents` installs these on the
server's contents manager (and its file checkpoints) at start-up; they run in
the server (unsandboxed, as the user), never in a kernel or the sandbox.

Checking a path and then letting jupyter_server act on the path string again
leaves a window: a cell that swaps a project folder with a link to a host
folder (``renameat2(RENAME_EXCHANGE)`` in a loop) between the two makes a
DELETE remove a host file. Here the operation itself is done on the folder
the walk from the root holds open (:func:`.server_links.held`: no link
followed, every component checked): ``unlinkat``, ``renameat``, ``mkdirat``,
an ``rmtree`` by descriptors, and a folder copy that walks the source by
descriptors with ``O_NOFOLLOW`` and refuses any link it meets. A path outside
the server root, and a delete to the trash (``send2trash`` works by path; see
the README's known limits), are left to jupyter_server's own code.
"""

from __future__ import annotations

import errno
import inspect
import os
import shutil
import stat
from typing import Any

from tornado.web import HTTPError

from .server_links import COPIED, DELETED, PLANTED, RENAMED, SAVED, _parts_below, _refuse, held, lstat_in, open_in

_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(dir_fd: int, name: str, rel: str, action: str) -> int:
    """A readable fd of the folder ``name`` in ``dir_fd``; refuses a link (swapped in after the check)."""
    try:
        return os.open(name, _READ_DIR, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            _refuse(rel, f"{rel} {PLANTED}", action)
        raise


class Ops:
    """The operations of one file contents manager (or its file checkpoints)."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.orig_delete: Any = None  # jupyter_server's delete_file, for a trash on another file system

    def root(self) -> str:
        return os.path.abspath(str(self.manager.root_dir))

    def below(self, os_path: str) -> bool:
        return _parts_below(self.root(), os_path) is not None

    def _hidden(self, os_path: str, what: str) -> None:
        from jupyter_core.paths import is_hidden

        if not getattr(self.manager, "allow_hidden", False) and is_hidden(os_path, self.manager.root_dir):
            raise HTTPError(400, f"Cannot {what} file or directory {os_path!r}")

    # -- delete ---------------------------------------------------------------------------------------

    def delete(self, path: str) -> Any:
        """Replaces ``delete_file``: in the held folder, to the trash (:meth:`_trash`) or not (:meth:`_delete`)."""
        path = path.strip("/")
        os_path = self.manager._get_os_path(path)
        self._hidden(os_path, "delete")
        found = held(self.root(), os_path, DELETED)
        assert found is not None
        dir_fd, name, rel = found
        try:
            st = lstat_in(dir_fd, name, rel, DELETED)
            if st is None:
                raise HTTPError(404, f"file or directory does not exist: {path!r}")
            if getattr(self.manager, "delete_to_trash", False):
                return self._trash(dir_fd, name, st, path, os_path)
            with self.manager.perm_to_403(os_path):
                self._delete(dir_fd, name, rel, st, os_path)
        finally:
            os.close(dir_fd)
        return None

    def _delete(self, dir_fd: int, name: str, rel: str, st: os.stat_result, os_path: str) -> None:
        """delete_to_trash off: unlinkat, or an rmtree by descriptors."""
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)  # a link itself is removed, never its target
            return
        sub = _open_dir(dir_fd, name, rel, DELETED)
        try:
            names = set(os.listdir(sub))
        finally:
            os.close(sub)
        cp_dir = getattr(getattr(self.manager, "checkpoints", None), "checkpoint_dir", None)
        if not getattr(self.manager, "always_delete_dir", False) and names - {cp_dir}:
            raise HTTPError(400, f"Directory {os_path} not empty")
        shutil.rmtree(name, dir_fd=dir_fd)  # by descriptors; refuses a link swapped in

    def _trash(self, dir_fd: int, name: str, st: os.stat_result, path: str, os_path: str) -> Any:
        """delete_to_trash on, for a path on the home trash's device: a renameat into it.

        send2trash's freedesktop layout (``files/`` and ``info/`` of ``$XDG_DATA_HOME/Trash``).
        Elsewhere (another file system): jupyter_server's ``send2trash`` of the path string
        (a known limit).
        """
        from send2trash import plat_other as trash

        if st.st_dev != trash.get_dev(os.path.realpath(os.path.expanduser(b"~"))):
            return self.orig_delete(path)  # (a coroutine for the async manager: awaited by _install)
        if not os.access(name, os.W_OK, dir_fd=dir_fd, follow_symlinks=False):
            raise HTTPError(403, f"Permission denied: {path}")
        files, info = (os.path.join(trash.HOMETRASH_B, d) for d in (trash.FILES_DIR, trash.INFO_DIR))
        base, ext = os.path.splitext(os.fsencode(name))
        dest, counter = os.fsencode(name), 0
        while os.path.lexists(os.path.join(files, dest)) or os.path.lexists(
            os.path.join(info, dest + trash.INFO_SUFFIX)
        ):
            counter += 1
            dest = b"%s %d%s" % (base, counter, ext)
        trash.check_create(files)
        trash.check_create(info)
        info_file = os.path.join(info, dest + trash.INFO_SUFFIX)
        with open(info_file, "x") as f:
            f.write(trash.info_for(os.fsencode(os_path), None))  # absolute; no realpath of the raced path
        try:
            os.rename(name, os.path.join(files, dest), src_dir_fd=dir_fd)
        except OSError as e:
            os.unlink(info_file)
            raise HTTPError(400, f"send2trash failed: {e}") from e
        return None

    def delete_checkpoint(self, checkpoint_id: str, path: str) -> None:
        """Replaces the file checkpoints' ``delete_checkpoint``."""
        cp = self.checkpoint(checkpoint_id, path)
        found = held(self.root(), cp, DELETED) if cp is not None else None
        if found is None:
            self.manager.no_such_checkpoint(path.strip("/"), checkpoint_id)
            return
        dir_fd, name, rel = found
        try:
            st = lstat_in(dir_fd, name, rel, DELETED)
            if st is None or not stat.S_ISREG(st.st_mode):
                self.manager.no_such_checkpoint(path.strip("/"), checkpoint_id)
            with self.manager.perm_to_403():
                os.unlink(name, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    def checkpoint(self, checkpoint_id: str, path: str) -> str | None:
        """The checkpoint's os path below the root (jupyter_server's layout, no folder made); None if elsewhere."""
        parent, name = ("/" + path.strip("/")).rsplit("/", 1)
        base, ext = os.path.splitext(name)
        os_dir = self.manager._get_os_path(path=parent.strip("/"))
        cp = os.path.join(os_dir, str(self.manager.checkpoint_dir), f"{base}-{checkpoint_id}{ext}")
        return cp if self.below(cp) else None

    # -- rename ---------------------------------------------------------------------------------------

    def rename_file(self, old_path: str, new_path: str) -> None:
        """Replaces ``rename_file``: renameat between the two held folders."""
        old_path, new_path = old_path.strip("/"), new_path.strip("/")
        if old_path == new_path:
            return
        old_os, new_os = self.manager._get_os_path(old_path), self.manager._get_os_path(new_path)
        self._hidden(old_os, "rename")
        self._hidden(new_os, "rename")
        if not self._rename(old_os, new_os):
            raise HTTPError(404, f"File or directory does not exist: {old_path}")

    def _rename(self, old_os: str, new_os: str) -> bool:
        """False when ``old_os`` does not exist; 409 when ``new_os`` does; 403 for a link at either end."""
        old = held(self.root(), old_os, RENAMED)
        assert old is not None
        try:
            new = held(self.root(), new_os, RENAMED)
            assert new is not None
            try:
                st = lstat_in(old[0], old[1], old[2], RENAMED)
                if st is None:
                    return False
                if stat.S_ISLNK(st.st_mode):
                    _refuse(old[2], f"{old[2]} {PLANTED}", RENAMED)
                there = lstat_in(new[0], new[1], new[2], RENAMED)
                if there is not None and stat.S_ISLNK(there.st_mode):
                    _refuse(new[2], f"{new[2]} {PLANTED}", RENAMED)
                if there is not None and (there.st_dev, there.st_ino) != (st.st_dev, st.st_ino):
                    raise HTTPError(409, f"File already exists: {new[2]}")
                with self.manager.perm_to_403():
                    try:
                        os.rename(old[1], new[1], src_dir_fd=old[0], dst_dir_fd=new[0])
                    except OSError as e:
                        if e.errno == errno.ENOENT:
                            return False
                        if e.errno == errno.EACCES:
                            raise
                        raise HTTPError(500, f"Unknown error renaming file: {old[2]} {e}") from e
                return True
            finally:
                os.close(new[0])
        finally:
            os.close(old[0])

    def rename_checkpoint(self, checkpoint_id: str, old_path: str, new_path: str) -> None:
        """Replaces the file checkpoints' ``rename_checkpoint``; the new checkpoint folder is made by mkdirat."""
        old_cp, new_cp = self.checkpoint(checkpoint_id, old_path), self.checkpoint(checkpoint_id, new_path)
        if old_cp is None or new_cp is None:
            _refuse(old_path, "a checkpoint outside the server root", RENAMED)
        found = held(self.root(), os.path.dirname(old_cp), RENAMED)
        assert found is not None
        try:
            st = lstat_in(*found, RENAMED)
            if st is None:
                return  # no checkpoint folder, so no checkpoint
        finally:
            os.close(found[0])
        self._mkdir(os.path.dirname(new_cp), exist_ok=True)
        try:
            self._rename(old_cp, new_cp)
        except HTTPError as e:
            if e.status_code != 409:
                raise
            self._rename_over(old_cp, new_cp)

    def _rename_over(self, old_os: str, new_os: str) -> None:
        """A checkpoint renamed over an older one (jupyter_server's ``shutil.move`` replaces it too)."""
        old, new = held(self.root(), old_os, RENAMED), held(self.root(), new_os, RENAMED)
        assert old is not None and new is not None
        try:
            there = lstat_in(new[0], new[1], new[2], RENAMED)
            if there is not None and not stat.S_ISREG(there.st_mode):
                _refuse(new[2], f"{new[2]} is not a regular file", RENAMED)
            os.rename(old[1], new[1], src_dir_fd=old[0], dst_dir_fd=new[0])
        finally:
            os.close(old[0])
            os.close(new[0])

    # -- new folders and folder copies ------------------------------------------------------------------

    def save_directory(self, os_path: str, model: Any = None, path: str = "") -> None:
        """Replaces ``_save_directory``: mkdirat in the held folder."""
        self._hidden(os_path, "create")
        self._mkdir(os_path, exist_ok=True)

    def _mkdir(self, os_path: str, exist_ok: bool) -> None:
        found = held(self.root(), os_path, SAVED)
        assert found is not None
        dir_fd, name, rel = found
        try:
            with self.manager.perm_to_403(os_path):
                try:
                    os.mkdir(name, dir_fd=dir_fd)
                    return
                except FileExistsError:
                    if not exist_ok:
                        raise
            st = lstat_in(dir_fd, name, rel, SAVED)
            if st is not None and stat.S_ISLNK(st.st_mode):
                _refuse(rel, f"{rel} {PLANTED}")
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise HTTPError(400, f"Not a directory: {os_path}")
        finally:
            os.close(dir_fd)

    def copy_dir(self, from_path: str, to_path_original: str, to_name: str, to_path: str) -> Any:
        """Replaces ``_copy_dir``: the source walked by descriptors, each file opened ``O_NOFOLLOW``."""
        src_os = self.manager._get_os_path(from_path.strip("/"))
        dst_os = os.path.join(self.manager._get_os_path(to_path_original.strip("/")), to_name)
        src, dst = held(self.root(), src_os, COPIED), held(self.root(), dst_os, COPIED)
        assert src is not None and dst is not None
        try:
            with self.manager.perm_to_403(src_os):
                sub = _open_dir(src[0], src[1], src[2], COPIED)
                try:
                    _copy_tree(sub, dst[0], dst[1], src[2])
                finally:
                    os.close(sub)
        except OSError as err:
            raise HTTPError(400, f"Can't copy '{from_path}' into Folder '{to_path}'") from err
        finally:
            os.close(src[0])
            os.close(dst[0])
        return self.manager.get(to_path, content=False)


def _copy_tree(src: int, dst_parent: int, dst_name: str, rel: str) -> None:
    """Copy the folder open at ``src`` to a new folder ``dst_name`` of ``dst_parent``; refuses any link inside."""
    st = os.fstat(src)
    os.mkdir(dst_name, 0o700, dir_fd=dst_parent)
    dst = _open_dir(dst_parent, dst_name, rel, COPIED)  # the new folder, a link swapped in refused
    try:
        for name in sorted(os.listdir(src)):
            where = os.path.join(rel, name)
            entry = lstat_in(src, name, where, COPIED)
            if entry is None:
                continue
            if stat.S_ISLNK(entry.st_mode):
                _refuse(where, f"{where} {PLANTED}", COPIED)
            if stat.S_ISDIR(entry.st_mode):
                sub = _open_dir(src, name, where, COPIED)
                try:
                    _copy_tree(sub, dst, name, where)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(entry.st_mode):
                _copy_file(src, dst, name, where)
            else:
                _refuse(where, f"{where} is not a regular file or folder", COPIED)
        os.fchmod(dst, stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(dst)


def _copy_file(src: int, dst: int, name: str, rel: str) -> None:
    fd = open_in(src, name, rel, COPIED)
    with os.fdopen(fd, "rb") as source:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _refuse(rel, f"{rel} is not a regular file", COPIED)
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst)
        with os.fdopen(out, "wb") as target:
            shutil.copyfileobj(source, target)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))


def _install(owner: Any, name: str, sync: Any, when: Any = None) -> bool:
    """Put ``sync`` (run in a thread when the original is async) in place of ``owner.name`` for paths below the root."""
    orig = getattr(owner, name, None)
    if orig is None:
        return False

    def pick(*args: Any, **kwargs: Any) -> Any:
        return sync if when is None or when(*args, **kwargs) else orig

    if inspect.iscoroutinefunction(orig):

        async def replaced_async(*args: Any, **kwargs: Any) -> Any:
            from anyio.to_thread import run_sync

            fn = pick(*args, **kwargs)
            if fn is orig:
                return await orig(*args, **kwargs)
            result = await run_sync(lambda: sync(*args, **kwargs))
            return await result if inspect.isawaitable(result) else result  # copy_dir's model: an async get

        setattr(owner, name, replaced_async)
    else:
        setattr(owner, name, lambda *args, **kwargs: pick(*args, **kwargs)(*args, **kwargs))
    return True


def install(manager: Any) -> list[str]:
    """Install the held-folder operations on a file contents manager and its file checkpoints."""
    from jupyter_server.services.contents.filecheckpoints import FileCheckpoints
    from jupyter_server.services.contents.fileio import FileManagerMixin

    if not isinstance(manager, FileManagerMixin):
        return []
    ops = Ops(manager)
    done = []

    ops.orig_delete = getattr(manager, "delete_file", None)
    if _install(manager, "delete_file", ops.delete):
        done.append("deletes")
    if _install(manager, "rename_file", ops.rename_file):
        done.append("renames")
    if _install(manager, "_save_directory", ops.save_directory, lambda os_path, *a, **k: ops.below(os_path)):
        done.append("new folders")
    if _install(manager, "_copy_dir", ops.copy_dir):
        done.append("folder copies")
    checkpoints = getattr(manager, "checkpoints", None)
    if isinstance(checkpoints, FileCheckpoints):
        cp_ops = Ops(checkpoints)
        _install(checkpoints, "delete_checkpoint", cp_ops.delete_checkpoint)
        _install(checkpoints, "rename_checkpoint", cp_ops.rename_checkpoint)
        done.append("checkpoint deletes and renames")
    return done


__all__ = ["Ops", "install"]
